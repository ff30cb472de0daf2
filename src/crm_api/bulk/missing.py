"""Companies an import makes when its rows name them by a domain no live company has
(``create_missing_companies``, on by default): one set of them per chunk, in the chunk's transaction.

Each missing domain becomes a company named after it, through ``writes.apply`` like any other create (its
rules, its ``company.created`` event, its webhooks), so a chunk that is rolled back (a killed worker) leaves
none of them. The domains' advisory locks (the ones a batch upsert by domain takes) are held first and the
domains read again under them, so two imports, or an import and an API upsert, naming the same new domain
end with one company.
"""

from __future__ import annotations

import uuid

import asyncpg

from ..auth import Context
from ..companies.spec import COMPANIES
from ..errors import CRMError
from ..locks import key_lock, lock_keys
from ..resources import repository as repo
from ..resources import writes
from ..resources.service import validate
from ..resources.spec import ResourceSpec


async def companies(
    conn: asyncpg.Connection, ctx: Context, dry_run: bool, spec: ResourceSpec, domains: list[str]
) -> dict[str, uuid.UUID | str] | None:
    """Each missing domain's new company id, or why none was made; None for another resource (its rows
    keep their ``not_found``). A dry run makes nothing and names no id: its rows go on without the company.
    """
    if spec is not COMPANIES:
        return None
    if dry_run:
        return {}
    await lock_keys(conn, [key_lock(ctx.workspace_id, spec.name, "domain", d) for d in domains])
    live = await repo.fetch_live_by_key(conn, spec, ctx.workspace_id, "domain", domains)
    out: dict[str, uuid.UUID | str] = {r["domain"]: r["id"] for r in live}  # made meanwhile by another
    todo: list[tuple[str, dict[str, object]]] = []
    for domain in domains:
        if domain in out:
            continue
        try:
            todo.append(
                (domain, spec.normalise(validate(spec.create_schema, {"name": domain, "domain": domain}, "")))
            )
        except CRMError as exc:
            out[domain] = _why(domain, exc)
    done = await writes.apply(conn, spec, ctx, [(None, payload) for _, payload in todo], "created")
    for pos, (domain, _) in enumerate(todo):
        if pos in done.failures:
            out[domain] = _why(domain, done.failures[pos])
        elif done.lost(pos):  # cannot happen under the lock; said rather than assumed
            out[domain] = f"No live company has domain {domain}, and one made meanwhile could not be read"
        else:
            out[domain] = done.rows[pos]["id"]
    return out


def _why(domain: str, exc: CRMError) -> str:
    reasons = "; ".join(f"{e.path.lstrip('/') or 'company'}: {e.message}" for e in exc.errors) or exc.detail
    return f"No live company has domain {domain}, and none could be made: {reasons}"
