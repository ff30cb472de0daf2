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
from ..resources.service import bump, events_for, merged_row, new_row, now
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
    at = now()
    comment = new_row(COMMENTS, ctx, payload, at)
    comment["api_key_id"] = ctx.principal.key_id
    body = COMMENTS.to_api(comment)
    events = [emit(ctx, "ticket.comment_created", COMMENTS.object, comment["id"], body, {}, at)]
    await repo.write(conn, COMMENTS, ctx.workspace_id, inserts=[comment], events=events)
    answers = comment["public"] and comment["author_type"] == "agent"
    if answers and ticket["first_responded_at"] is None:
        updated = merged_row(TICKETS, ticket, {"first_responded_at": at}, at)
        bump(ticket, updated, at)
        written = await repo.write(
            conn,
            TICKETS,
            ctx.workspace_id,
            updates=[updated],
            events=events_for(TICKETS, ctx, ticket, updated, "updated", at),
        )
        assert ticket_id in written, "the ticket row is locked by this transaction"
    return comment
