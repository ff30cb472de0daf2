"""The rules of an erase: the contact must be in the workspace (404) and not yet erased (409).

What goes: the contact's personal fields, tags, custom fields, external ids (and their registry rows) and
marketing consent (false, its time and source null); subject and body of activities linked to this
contact alone (an activity shared with other contacts only loses this id from ``contact_ids``); the body
of ticket comments it wrote as requester; the same fields in every stored event payload about those
objects (left as the row is: null, ``[]``, ``{}`` or ``''``, so payloads keep their published
schema), which is also what webhook deliveries send (bodies are built from ``events.data`` at send time,
never stored); receivers' response bodies logged for those events; personal values in stored
Idempotency-Key responses. What stays: ids, links, deals and their amounts, tickets, counts.

The one writer of resource rows that does not go through ``resources.writes.apply``: an erase is set-based
across tables (the contact, every activity and comment about it, the stored events about each of them),
and its event must not carry the values it removes, where ``apply`` records each change with the row and
its previous values. It builds its event with the same ``events.emit`` and records and fans it out with
the same ``events.store.events_cte``/``fanout``, in its one statement. Contacts have no ``after_write``;
if they get one, call it here.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ..auth import Context
from ..errors import Conflict, NotFound
from ..events.emit import emit
from ..resources.service import now
from . import repository as repo


async def erase_contact(conn: asyncpg.Connection, ctx: Context, contact_id: uuid.UUID) -> dict[str, Any]:
    found = await repo.lock_contact(conn, ctx.workspace_id, contact_id)
    if found is None:
        raise NotFound(f"No contact with id {contact_id}")
    if found["erased_at"] is not None:
        raise Conflict(f"The contact {contact_id} was already erased at {found['erased_at'].isoformat()}")
    at = now()
    ref = {"id": contact_id, "object": "contact"}
    event = emit(ctx, "contact.erased", "contact", contact_id, ref, {}, at)
    counts = await repo.erase(conn, ctx.workspace_id, contact_id, at, event)
    # the values as they were, to find them in stored responses
    values = [
        found[k]
        for k in ("email", "first_name", "last_name", "phone", "title", "marketing_consent_source")
        if found[k]
    ]
    values += [str(v) for v in (found["external_ids"] or {}).values()]
    counts["idempotency_keys"] = await repo.scrub_idempotency_records(
        conn, ctx.workspace_id, contact_id, values
    )
    return {
        "object": "erasure",
        "contact": ref,
        "erased_at": at,
        "request_id": ctx.request_id,
        "counts": counts,
    }
