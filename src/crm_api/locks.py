"""Advisory locks on keys: writers of the same natural key, external id, unique custom field value, order
or Idempotency-Key queue on one lock until their transaction commits."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, Select, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from . import sql


def lock_hash(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def key_lock(workspace_id: uuid.UUID, *parts: str) -> int:
    """The lock on one key in a workspace. ``parts`` name it: (resource, kind, value...) for a natural key,
    an external id or a unique custom field value; ("orders", source, external id); ("idempotency", key).
    Every writer of a key must name it the same way, or they do not queue."""
    return lock_hash(str(workspace_id), *parts)


def _lock_keys() -> Select[Any]:
    hashes = func.unnest(sql.param("hashes", ARRAY(BigInteger))).table_valued("h").render_derived(name="h")
    return select(func.pg_advisory_xact_lock(hashes.c.h)).order_by(hashes.c.h)


_LOCK_KEYS = sql.Query(_lock_keys)


async def lock_keys(conn: asyncpg.Connection, hashes: Iterable[int]) -> None:
    """Serialise writers of the same natural keys until commit (sorted, so batches cannot deadlock)."""
    ordered = sorted(set(hashes))
    # an xact lock taken outside a transaction would be released at once
    assert conn.is_in_transaction(), "advisory locks need the request's transaction (LockingConn)"
    if ordered:
        await _LOCK_KEYS.execute(conn, hashes=ordered)
