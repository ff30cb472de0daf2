"""Who an automation's writes are by: ``automation:<id>`` in their events, and the run and its depth in the
chain in their ``request_id``, which is how the next run knows how deep it is."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from ..auth import Context, Principal

MAX_DEPTH = 3
"""Automations triggered by automations' changes stop here: the fourth in a chain is not run."""
_REQUEST = re.compile(r"^automation-run:([0-9a-f-]{36}):(\d+)$")


@dataclass(frozen=True, slots=True)
class AutomationPrincipal(Principal):
    automation_id: uuid.UUID | None = None

    @property
    def actor(self) -> str:
        return f"automation:{self.automation_id}"


def context(workspace_id: uuid.UUID, automation_id: uuid.UUID, run_id: uuid.UUID, depth: int) -> Context:
    principal = AutomationPrincipal(workspace_id, uuid.UUID(int=0), frozenset(), automation_id=automation_id)
    return Context(principal, f"automation-run:{run_id}:{depth}")


def depth_of(request_id: str | None) -> int:
    """The depth of the run an event's change came from; 0 for a change no automation made."""
    match = _REQUEST.match(request_id or "")
    return int(match.group(2)) if match else 0


def run_of(request_id: str | None) -> uuid.UUID | None:
    """The run an event's change came from, if an automation's."""
    match = _REQUEST.match(request_id or "")
    return uuid.UUID(match.group(1)) if match else None
