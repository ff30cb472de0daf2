"""Which endpoint gets which event: this module is the rule, written once.

An endpoint subscribes with ``event_types``: exact types (``deal.won``), an object's wildcard (``deal.*``)
or ``*``. It receives while enabled; one disabled for failing keeps receiving, its deliveries parked until
it is enabled again (one disabled on request receives nothing). The event statement's fan-out
(``events/store.py``) applies the rule in SQL, so this module imports nothing of the app's but constants.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, any_, func, literal, or_

from ..models.webhooks import DISABLED_FAILING


def endpoint_gets_event(ep: FromClause, ev: FromClause) -> ColumnElement[Any]:
    """The rule as SQLAlchemy Core: ``ep`` is webhook_endpoints, ``ev`` has the event's ``type``."""
    types = ep.c.event_types
    return and_(
        or_(ep.c.status == "enabled", ep.c.disabled_reason == DISABLED_FAILING),
        or_(
            ev.c.type == any_(types),
            literal("*") == any_(types),
            func.split_part(ev.c.type, ".", 1).concat(".*") == any_(types),
        ),
    )


def subscribed(patterns: Iterable[str], event_type: str) -> bool:
    """The same rule in Python: do an endpoint's ``event_types`` take ``event_type``."""
    prefix_wildcard = event_type.partition(".")[0] + ".*"
    return any(p in ("*", event_type, prefix_wildcard) for p in patterns)
