"""What the quotas cost a request: CPU microseconds per ``RateLimits.admit`` (both quotas, the RateLimit
fields), with the background write-back running, in this process's store and in Redis.

    python bench/ratelimit.py [--redis redis://127.0.0.1:6379/0] [--seconds 5] [--rate 4000]

Requests are paced at ``--rate`` a second for ``--seconds`` (the write-back is driven by time, so its share
depends on how long the run lasts, not on how many requests it has), for one hot key and for 1,000 keys
taking turns. The same paced loop with nothing in it is measured first and subtracted. For comparison it
also times the plain use of the library on the request path (hit and read back both quotas: four store
calls a request), which is what the write-back avoids.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from limits import RateLimitItemPerSecond
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from crm_api.config import Settings
from crm_api.ratelimit import RateLimits

BATCH = 40


async def paced(seconds: float, rate: int, step: object) -> tuple[float, int]:
    """CPU seconds used while calling ``step(i)`` ``rate`` times a second for ``seconds``; and the count."""
    n = 0
    start_cpu, start = time.process_time(), time.monotonic()
    while time.monotonic() - start < seconds:
        for _ in range(BATCH):
            await step(n)  # type: ignore[operator]
            n += 1
        ahead = start + n / rate - time.monotonic()
        await asyncio.sleep(max(0.0, ahead))
    return time.process_time() - start_cpu, n


async def measure(settings: Settings, label: str, seconds: float, rate: int) -> None:
    async def nothing(_: int) -> None:
        return None

    idle_cpu, idle_n = await paced(seconds, rate, nothing)
    for keys in (1, 1000):
        limits = RateLimits(settings)
        stop = asyncio.Event()
        loop = asyncio.create_task(limits.run(stop))
        ids = [(uuid.uuid4(), uuid.uuid4()) for _ in range(keys)]
        state: dict[str, object] = {}  # what admit leaves for the response is dropped

        async def admit(
            i: int,
            ids: list[tuple[uuid.UUID, uuid.UUID]] = ids,
            limits: RateLimits = limits,
            state: dict[str, object] = state,
        ) -> None:
            key, ws = ids[i % len(ids)]
            await limits.admit(state, key, ws)

        cpu, n = await paced(seconds, rate, admit)
        stop.set()
        await loop
        await limits.close()
        per = (cpu / n - idle_cpu / idle_n) * 1e6
        print(f"{label:9} {keys:5} key(s): {per:6.1f} us CPU per request ({n} requests at {rate}/s)")


async def plain_library(settings: Settings, label: str, n: int) -> None:
    limits = RateLimits(settings)
    strategy = SlidingWindowCounterRateLimiter(limits.storage)
    item = RateLimitItemPerSecond(10**9, 2)
    start = time.process_time()
    for _ in range(n):
        for ident in ("key", "workspace"):
            await strategy.hit(item, ident, "bench")
            await strategy.get_window_stats(item, ident, "bench")
    per = (time.process_time() - start) / n * 1e6
    print(f"{label:9} plain limits calls on the request path: {per:6.1f} us CPU per request")
    await limits.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=4000)
    args = parser.parse_args()
    quotas = {"rate_limit_key_per_second": 10**6, "rate_limit_key_burst": 2 * 10**6}
    quotas |= {"rate_limit_workspace_per_second": 10**6, "rate_limit_workspace_burst": 2 * 10**6}
    runs = [("in-process", Settings(**quotas))]
    if args.redis:
        prefix = f"crm-bench-{uuid.uuid4().hex[:8]}"
        runs.append(("redis", Settings(redis_url=args.redis, redis_key_prefix=prefix, **quotas)))
    for label, settings in runs:
        await measure(settings, label, args.seconds, args.rate)
        await plain_library(settings, label, 2000)


if __name__ == "__main__":
    asyncio.run(main())
