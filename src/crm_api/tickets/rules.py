"""Ticket rules as pure functions over rows: the status machine and the SLA clocks.

Statuses: ``new`` -> ``open`` / ``pending`` / ``on_hold`` (freely among these) -> ``solved`` -> ``closed``.
A solved ticket can be reopened; a closed one is final; nothing returns to ``new``; only a solved ticket
closes. A ticket may be created in any status (imports).

Clocks: the first-response clock runs from creation until the first public agent comment. The resolution
clock stands still while the ticket is pending, on hold or solved; when it runs again the due time moves
by the time it stood, counted in the policy's hours. A new priority or policy recomputes both due times
from the ticket's creation (keeping the time already paused). A target once reported as breached stays
reported (the breach job emits once per target), even if a later change moves its due time. Editing a
policy leaves the due times of existing tickets alone until they are re-prioritised.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import Conflict, FieldError
from . import sla

PAUSED = ("pending", "on_hold", "solved")


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "The ticket cannot move to this status"


def check_transition(old: str | None, new: str) -> InvalidTransition | None:
    if old is None or old == new:
        return None
    reason = None
    if old == "closed":
        reason = "a closed ticket is final"
    elif new == "new":
        reason = "a ticket cannot return to new"
    elif new == "closed" and old != "solved":
        reason = "only a solved ticket can be closed"
    if reason is None:
        return None
    return InvalidTransition(
        f"Cannot move the ticket from {old} to {new}: {reason}",
        [FieldError("/status", f"{old} -> {new} is not allowed: {reason}")],
    )


def stamp_status(old: dict[str, Any] | None, new: dict[str, Any], now: dt.datetime) -> None:
    """``solved_at`` and ``closed_at`` follow the status; reopening clears ``solved_at``."""
    before = old["status"] if old else None
    status = new["status"]
    if status == before:
        return
    if status == "solved":
        new["solved_at"] = now
    elif status == "closed":
        new["closed_at"] = now
        if new["solved_at"] is None:
            new["solved_at"] = now
    else:
        new["solved_at"] = None


def needs_policy(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether this change moves an SLA clock (so the policy must be loaded)."""
    if old is None:
        return True
    return (
        old["priority"] != new["priority"]
        or old["sla_policy_id"] != new["sla_policy_id"]
        or (old["status"] in PAUSED) != (new["status"] in PAUSED)
    )


def apply_clock(
    old: dict[str, Any] | None, new: dict[str, Any], policy: sla.Policy | None, now: dt.datetime
) -> None:
    """Set the due times and pause bookkeeping of ``new`` (edited in place)."""
    if policy is None:
        new.update(first_response_due_at=None, resolution_due_at=None, sla_paused_at=None)
        return
    schedule = policy.schedule
    retarget = (
        old is None or old["priority"] != new["priority"] or old["sla_policy_id"] != new["sla_policy_id"]
    )
    paused_since = old["sla_paused_at"] if old else None
    pausing = new["status"] in PAUSED
    if new["status"] == "closed":
        new["sla_paused_at"] = None  # the clocks end here
    elif paused_since is not None and not pausing:
        # whole seconds, so the shift and the running total always agree
        stood = dt.timedelta(seconds=int(sla.between(paused_since, now, schedule).total_seconds()))
        new["sla_paused_seconds"] = int(new["sla_paused_seconds"] or 0) + int(stood.total_seconds())
        new["sla_paused_at"] = None
        if not retarget and new["resolution_due_at"] is not None:
            new["resolution_due_at"] = sla.add(new["resolution_due_at"], stood, schedule)
    elif pausing and paused_since is None:
        new["sla_paused_at"] = now
    if not retarget:
        return
    start = new["created_at"]
    first = policy.target(new["priority"], "first_response")
    if new["first_responded_at"] is None:
        new["first_response_due_at"] = sla.add(start, first, schedule) if first else None
    resolution = policy.target(new["priority"], "resolution")
    paused = dt.timedelta(seconds=int(new["sla_paused_seconds"] or 0))
    new["resolution_due_at"] = sla.add(start, resolution + paused, schedule) if resolution else None
