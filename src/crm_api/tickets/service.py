"""Ticket comments: a comment, its event, and (for the first public agent reply) the ticket's
``first_responded_at`` with its ``ticket.updated`` event, in one transaction.

The ticket row is locked first, so two first replies racing each other stamp it once.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from ..auth import Context
from ..errors import Conflict, FieldError, NotFound, Unprocessable
from ..events.emit import emit
from ..resources import repository as repo
from ..resources import writes
from ..resources.service import now
from .spec import COMMENTS, TICKETS


async def create_comment(
    conn: asyncpg.Connection, ctx: Context, ticket_id: uuid.UUID, payload: dict[str, Any]
) -> dict[str, Any]:
    ticket = await repo.fetch_one(conn, TICKETS, ctx.workspace_id, ticket_id, for_update=True)
    if ticket is None:
        raise NotFound(f"No ticket with id {ticket_id}")
    if ticket["archived_at"] is not None:
        raise Conflict(
            "The ticket is archived; restore it to comment", [FieldError("/ticket_id", "archived")]
        )
    if ticket["status"] == "closed":
        raise Conflict("The ticket is closed; a closed ticket takes no comments")
    payload = {**payload, "ticket_id": ticket_id}
    if payload.get("author_type") == "requester":
        requester = ticket["requester_id"]
        if requester is None:
            raise Unprocessable(
                "The ticket has no requester to write this comment",
                [FieldError("/author_type", "the ticket has no requester_id")],
            )
        if payload.get("author_id") not in (None, requester):
            raise Unprocessable(
                "A requester comment is written by the ticket's requester",
                [FieldError("/author_id", "must be the ticket's requester_id")],
            )
        payload["author_id"] = requester
    payload["api_key_id"] = ctx.principal.key_id
    at = now()

    def comment_created(old: dict[str, Any] | None, comment: dict[str, Any]) -> list[dict[str, Any]]:
        # a comment is part of its ticket's story: its one event is the ticket's, not ``ticket_comment.*``
        body = COMMENTS.to_api(comment)
        return [emit(ctx, "ticket.comment_created", COMMENTS.object, comment["id"], body, {}, at)]

    done = await writes.apply(conn, COMMENTS, ctx, [(None, payload)], None, at=at, events=comment_created)
    done.raise_first()
    comment = done.rows[0]
    answers = comment["public"] and comment["author_type"] == "agent"
    if answers and ticket["first_responded_at"] is None:
        # upkeep of a derived timestamp, not a client's change to the ticket: its rules are not run
        stamped = await writes.apply(
            conn, TICKETS, ctx, [(ticket, {"first_responded_at": at})], "updated", at=at, rules=False
        )
        assert ticket_id in stamped.written, "the ticket row is locked by this transaction"
    return comment
