"""Row ids: UUIDv7, the standard library's type, strictly increasing within a process (ids.py)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

from crm_api.ids import uuid7


def test_ids_are_version_7_stdlib_uuids_in_strictly_increasing_order() -> None:
    start_ms = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(20_000)]  # thousands per millisecond: the counter, not the clock, orders
    end_ms = time.time_ns() // 1_000_000
    assert all(type(i) is uuid.UUID and i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert all(a < b for a, b in itertools.pairwise(ids))
    # the leading 48 bits are the Unix time in milliseconds
    assert start_ms <= ids[0].int >> 80 <= ids[-1].int >> 80 <= end_ms + 1


def test_ids_made_on_several_threads_are_distinct_and_each_thread_sees_them_increase() -> None:
    made: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def make(out: list[uuid.UUID]) -> None:
        out.extend(uuid7() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({i for out in made for i in out}) == 20_000
    assert all(a < b for out in made for a, b in itertools.pairwise(out))
