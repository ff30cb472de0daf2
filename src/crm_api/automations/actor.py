"""Who an automation's writes are by: ``automation:<id>`` in their events, and the run and its depth in the
chain in their ``request_id``, which is how the next run knows how deep it is."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ..auth import Context, Principal
from ..events.chain import depth_of, request_id, run_of

__all__ = ["MAX_DEPTH", "AutomationPrincipal", "context", "depth_of", "run_of"]

MAX_DEPTH = 3
"""Automations triggered by automations' changes stop here: the fourth in a chain is not run."""


@dataclass(frozen=True, slots=True)
class AutomationPrincipal(Principal):
    automation_id: uuid.UUID | None = None

    @property
    def actor(self) -> str:
        return f"automation:{self.automation_id}"


def context(workspace_id: uuid.UUID, automation_id: uuid.UUID, run_id: uuid.UUID, depth: int) -> Context:
    principal = AutomationPrincipal(workspace_id, uuid.UUID(int=0), frozenset(), automation_id=automation_id)
    return Context(principal, request_id(run_id, depth))
