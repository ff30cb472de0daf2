"""The chain of automation runs an event belongs to, read from its ``request_id``
(``automation-run:<run>:<depth>``, written by ``automations/actor.py``): here, below the domains, so that
the segments worker can carry a run's place in the chain onto the entries its change caused."""

from __future__ import annotations

import re
import uuid

_REQUEST = re.compile(r"^automation-run:([0-9a-f-]{36}):(\d+)$")


def request_id(run_id: uuid.UUID, depth: int) -> str:
    return f"automation-run:{run_id}:{depth}"


def depth_of(request_id: str | None) -> int:
    """The depth of the run an event's change came from; 0 for a change no automation made."""
    match = _REQUEST.match(request_id or "")
    return int(match.group(2)) if match else 0


def run_of(request_id: str | None) -> uuid.UUID | None:
    """The run an event's change came from, if an automation's."""
    match = _REQUEST.match(request_id or "")
    return uuid.UUID(match.group(1)) if match else None
