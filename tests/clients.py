"""Types the tests share (a module of its own: ``conftest`` names a different module in each test folder)."""

from collections.abc import Awaitable, Callable

import httpx

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]
"""``await make_client(scopes=[...], workspace=name)``: an API client holding a new key."""
