"""JSON encoding in one place: orjson, RFC 3339 timestamps with ``Z``, decimals as strings."""

from __future__ import annotations

import decimal
import uuid
from typing import Any

import orjson

_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):  # asyncpg's own UUID subclass (orjson takes only the class itself)
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_OPTS)


def dumps_str(value: Any) -> str:
    return dumps(value).decode()


loads = orjson.loads
