"""Running an export (to come)."""

from __future__ import annotations

import asyncio
from typing import Any


async def run_once(pool: Any, lease: float, stop: asyncio.Event) -> bool:
    return False
