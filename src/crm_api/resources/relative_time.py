"""Relative times in the filter grammar: ``"-30d"`` is thirty days before the statement's ``now()``.

A relative value compiles to ``now() - $n::interval``: the database computes "now" once per statement, the
plan stays a range on the column's index, and one statement shape serves every relative value (only the
interval is a parameter). Units: ``m`` minutes, ``h`` hours, ``d`` days, ``w`` weeks.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_RELATIVE = re.compile(r"-([0-9]{1,6})([mhdw])")
_UNIT = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# far past any date a column holds, and within what a timestamptz can go back from today
_MAX = dt.timedelta(days=36500)
FORMS = "a relative time such as -15m, -12h, -30d or -2w"


def parse(value: Any) -> dt.timedelta | None:
    """The interval of a relative time, or None when ``value`` is not one."""
    if not isinstance(value, str):
        return None
    match = _RELATIVE.fullmatch(value)
    if match is None:
        return None
    interval = dt.timedelta(**{_UNIT[match[2]]: int(match[1])})
    return interval if interval <= _MAX else None


def is_relative(value: Any) -> bool:
    return parse(value) is not None
