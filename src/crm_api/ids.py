"""Time-ordered UUIDs (version 7) so new rows land at the right end of their index.

Within one process they are also strictly increasing (RFC 9562, method 1: the 12 bits after the
millisecond count up), so rows written in the same millisecond, such as a batch, keep their order.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def uuid7() -> uuid.UUID:
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _seq = ms, int.from_bytes(os.urandom(1), "big")  # leave room to count up
        else:
            _seq += 1
            if _seq > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                _last_ms, _seq = _last_ms + 1, 0
        ms, seq = _last_ms, _seq
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)
