"""Where the database holds sealed secrets (masterkey.py), and the passes over all of them.

- ``webhook_endpoints.secret`` and ``previous_secret``: the signing secrets. The dispatcher opens them to
  sign; the API shows a secret only on create and rotate, from the value it has just made.
- ``idempotency_keys.body`` of a response that carries a secret (a new API key, a new webhook secret): sealed
  whole, opened to replay it.

``prepare`` runs at every start of an API or dispatcher process: it refuses a key that does not open what the
database holds, then seals the values written in the clear before sealing existed (``seal_clear``; also
``crm-api secrets encrypt``, which seals stored responses of that time too). ``reseal_all`` moves every value
to the keyring's first key in one transaction (``crm-api secrets rotate``).

Rows are rewritten compare-and-set (only where the value is still the one read) rather than under row locks,
which Citus refuses across workspaces: a row another process changed meanwhile is left alone, and the
rotation then starts over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, Select, Text, Update, column, func, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB, UUID

from . import jsonutil, sql
from .masterkey import SEALED_PREFIX, Keyring, MasterKeyError, is_sealed

log = logging.getLogger("crm_api.vault")

_ENDPOINTS = sql.table("webhook_endpoints")
_RECORDS = sql.table("idempotency_keys")
# how a stored response that carries a secret reads in the clear (jsonutil writes compact JSON)
_CARRIES_SECRET = ('"secret":"whsec_', '"key":"crm_')


def _sealed(value: ColumnElement[Any]) -> ColumnElement[bool]:
    return func.starts_with(value, sql.const(SEALED_PREFIX))


def _endpoint_secrets(only_clear: bool) -> Select[Any]:
    t = _ENDPOINTS
    stmt = select(t.c.workspace_id, t.c.id, t.c.secret, t.c.previous_secret)
    if only_clear:
        stmt = stmt.where(or_(~_sealed(t.c.secret), ~_sealed(t.c.previous_secret)))
    return stmt


def _records(only_clear: bool) -> Select[Any]:
    k = _RECORDS
    stmt = select(k.c.workspace_id, k.c.key, k.c.body)
    if only_clear:
        return stmt.where(or_(*(func.strpos(k.c.body, sql.const(p)) > 0 for p in _CARRIES_SECRET)))
    return stmt.where(_sealed(k.c.body))


def _recordset(*columns: tuple[str, Any]) -> Any:
    return (
        func.jsonb_to_recordset(sql.param("rows", JSONB))
        .table_valued(*(column(n, t) for n, t in columns))
        .render_derived(name="r", with_types=True)
    )


def _set_endpoint_secrets() -> Update:
    t = _ENDPOINTS
    r = _recordset(
        ("workspace_id", UUID),
        ("id", UUID),
        ("secret", Text),
        ("previous_secret", Text),
        ("was_secret", Text),
        ("was_previous", Text),
    )
    return (
        update(t)
        .values(secret=r.c.secret, previous_secret=r.c.previous_secret)
        .where(
            t.c.workspace_id == r.c.workspace_id,
            t.c.id == r.c.id,
            t.c.secret == r.c.was_secret,
            t.c.previous_secret.is_not_distinct_from(r.c.was_previous),
        )
    )


def _set_record_bodies() -> Update:
    k = _RECORDS
    r = _recordset(("workspace_id", UUID), ("key", Text), ("body", Text), ("was", Text))
    return (
        update(k)
        .values(body=r.c.body)
        .where(k.c.workspace_id == r.c.workspace_id, k.c.key == r.c.key, k.c.body == r.c.was)
    )


_CLEAR_ENDPOINT_SECRETS = sql.Query(lambda: _endpoint_secrets(True))
_ALL_ENDPOINT_SECRETS = sql.Query(lambda: _endpoint_secrets(False))
_CLEAR_RECORDS = sql.Query(lambda: _records(True))
_SEALED_RECORDS = sql.Query(lambda: _records(False))
_SET_ENDPOINT_SECRETS = sql.Query(_set_endpoint_secrets)
_SET_RECORD_BODIES = sql.Query(_set_record_bodies)
_ONE_SEALED_SECRET = sql.Query(
    lambda: select(_ENDPOINTS.c.secret).where(_sealed(_ENDPOINTS.c.secret)).limit(1)
)


@dataclass
class Sealed:
    """How many endpoints and stored responses a pass rewrote, and whether each row it read was still
    as read when rewritten."""

    endpoints: int = 0
    records: int = 0
    complete: bool = True


def _updated(status: str) -> int:
    return int(status.split()[-1])


async def _rewrite_endpoints(
    conn: asyncpg.Connection, rows: list[asyncpg.Record], change: Callable[[str], str], done: Sealed
) -> None:
    changes = [
        {
            "workspace_id": str(r["workspace_id"]),
            "id": str(r["id"]),
            "secret": change(r["secret"]),
            "previous_secret": None if r["previous_secret"] is None else change(r["previous_secret"]),
            "was_secret": r["secret"],
            "was_previous": r["previous_secret"],
        }
        for r in rows
    ]
    if changes:
        done.endpoints = _updated(await _SET_ENDPOINT_SECRETS.execute(conn, rows=jsonutil.dumps_str(changes)))
        done.complete = done.complete and done.endpoints == len(changes)


async def _rewrite_records(
    conn: asyncpg.Connection, rows: list[asyncpg.Record], change: Callable[[str], str], done: Sealed
) -> None:
    changes = [
        {"workspace_id": str(r["workspace_id"]), "key": r["key"], "body": change(r["body"]), "was": r["body"]}
        for r in rows
    ]
    if changes:
        done.records = _updated(await _SET_RECORD_BODIES.execute(conn, rows=jsonutil.dumps_str(changes)))
        done.complete = done.complete and done.records == len(changes)


async def seal_clear(conn: asyncpg.Connection, keyring: Keyring, records: bool = False) -> Sealed:
    """Seal the signing secrets stored in the clear and, with ``records``, the stored responses that carry a
    secret in the clear (that pass reads the whole table: the command runs it, a start does not)."""

    def seal(value: str) -> str:
        return value if is_sealed(value) else keyring.seal(value)

    done = Sealed()
    await _rewrite_endpoints(conn, await _CLEAR_ENDPOINT_SECRETS.fetch(conn), seal, done)
    if records:
        await _rewrite_records(conn, await _CLEAR_RECORDS.fetch(conn), seal, done)
    return done


class _Changed(Exception):
    """A row changed between read and rewrite: roll back and start over."""


async def reseal_all(pool: asyncpg.Pool, keyring: Keyring, tries: int = 5) -> Sealed:
    """Every secret the database holds sealed under the keyring's first key (opened with whichever of its
    keys opens it), all in one transaction: on any failure nothing changes."""

    def reseal(value: str) -> str:
        return keyring.reseal(value) if is_sealed(value) else keyring.seal(value)

    for _ in range(tries):
        try:
            async with pool.acquire() as conn, conn.transaction():
                done = Sealed()
                await _rewrite_endpoints(conn, await _ALL_ENDPOINT_SECRETS.fetch(conn), reseal, done)
                await _rewrite_records(conn, await _SEALED_RECORDS.fetch(conn), reseal, done)
                if not done.complete:
                    raise _Changed
                return done
        except _Changed:
            log.info("secrets changed during the rotation; starting it over")
    raise MasterKeyError(f"secrets kept changing during the rotation; tried {tries} times, nothing changed")


async def check(pool: asyncpg.Pool, keyring: Keyring) -> None:
    """Refuse a keyring that does not open the stored secrets (a wrong key, or a rotation's old key alone)."""
    token = await _ONE_SEALED_SECRET.fetchval(pool)
    if token is not None:
        keyring.open(token)


async def prepare(pool: asyncpg.Pool, keyring: Keyring) -> None:
    """At a process's start: check the key, then seal what an older version wrote in the clear."""
    await check(pool, keyring)
    async with pool.acquire() as conn, conn.transaction():
        done = await seal_clear(conn, keyring)
    if done.endpoints:
        log.info("sealed %d webhook signing secrets stored in the clear", done.endpoints)
