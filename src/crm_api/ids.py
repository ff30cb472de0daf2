"""Time-ordered UUIDs (version 7) so new rows land at the right end of their index.

Within one process they are also strictly increasing (RFC 9562: a counter after the millisecond, which
uuid-utils keeps per process), so rows written in the same millisecond, such as a batch, keep their order.
They are the standard library's ``uuid.UUID`` (the ``compat`` flavour), as asyncpg and pydantic expect.
Python 3.14's ``uuid.uuid7`` does the same, and can replace this once 3.14 is the oldest Python we run on.
"""

from __future__ import annotations

from uuid_utils.compat import uuid7

__all__ = ["uuid7"]
