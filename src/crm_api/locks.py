"""Advisory locks on keys: writers of the same natural key, external id, unique custom field value, order
or Idempotency-Key queue on one lock until their transaction commits."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

import asyncpg


def lock_hash(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def key_lock(workspace_id: uuid.UUID, *parts: str) -> int:
    """The lock on one key in a workspace. ``parts`` name it: (resource, kind, value...) for a natural key,
    an external id or a unique custom field value; ("orders", source, external id); ("idempotency", key).
    Every writer of a key must name it the same way, or they do not queue."""
    return lock_hash(str(workspace_id), *parts)


async def lock_keys(conn: asyncpg.Connection, hashes: Iterable[int]) -> None:
    """Serialise writers of the same natural keys until commit (sorted, so batches cannot deadlock)."""
    ordered = sorted(set(hashes))
    # an xact lock taken outside a transaction would be released at once
    assert conn.is_in_transaction(), "advisory locks need the request's transaction (LockingConn)"
    if ordered:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(h) FROM unnest($1::bigint[]) AS h ORDER BY h", ordered
        )
