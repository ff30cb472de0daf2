"""Positional parameters for SQL text run on asyncpg, shared by the filter compiler, the custom field sorts
and the event feed."""

from __future__ import annotations

from typing import Any


class Params:
    """Positional parameters for asyncpg (``$1`` ...)."""

    def __init__(self, *initial: Any) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any, pg_type: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{pg_type}"
