"""Quotas: per API key and per workspace, and a throttle on failed authentication per client address.

The counting is the ``limits`` library's sliding-window counter, kept in Redis when ``CRM_REDIS_URL`` is set
(every API process shares it) and in this process otherwise. A quota of ``burst`` requests per window of
``burst / rate`` seconds keeps a token bucket's two numbers: a quiet client may send ``burst`` at once, and
over time no more than ``rate`` a second. Not its refill curve: after a full burst the quota comes back
only as the window turns (within ``w`` seconds), then at ``rate`` a second as the previous window's count
decays (6 s at twice the rate admit about 600 of a 100/s, 200-burst quota where a bucket would admit 800).
It is also exactly what the IETF RateLimit fields describe (``q`` requests per ``w`` seconds).

The request path never waits for the store. Each process keeps a view of each bucket it serves (what the
store said was left, minus what this process admitted since) and decides from it; a background task
(``run``) writes the admitted requests to the store in batches and reads back what is left: as soon as
``burst / 50`` requests are pending (at the next ``TICK``), after ``MAX_AGE`` seconds at most, and every
``TICK`` while a bucket in use is nearly empty. Only a bucket's first request in a process (and a refused
one whose bucket may have refilled) waits for the store. So a key can overshoot its quota by what the
processes admitted between two writes (a few percent of the burst, or what a slow process admitted within
``MAX_AGE``), and a request costs a few dictionary look-ups, not a Redis round trip (bench/ratelimit.py).

Failed authentication is rarer and must not be cheap to repeat: each refused key counts against the client
address at once, in the store (``AUTH_POLICY``), and an address over its budget gets 429 before any key
lookup. When Redis does not answer (within ``STORE_TIMEOUT``), the quotas fail open: each write-back starts
the bucket full again, and a warning is logged. A limiter outage must not become an API outage.

Headers follow draft-ietf-httpapi-ratelimit-headers-11 (May 2026): ``RateLimit-Policy`` lists each quota
(``"key";q=2000;w=2``) and ``RateLimit`` what is left of it (``"key";r=1999;t=1``; ``t`` is the seconds
until the store expects to free the next request, the ``limits`` library's reset time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from .config import Settings
from .errors import RateLimited

log = logging.getLogger("crm_api.ratelimit")

TICK = 0.05
"""How often the background task writes back the buckets the request path marked due (seconds)."""
MAX_AGE = 5.0
"""Admitted requests wait at most this long before the store hears of them."""
STORE_TIMEOUT = 0.5
"""A Redis command that takes longer has failed (and the quotas fail open)."""
AUTH_POLICY = "auth-failures"

Header = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True, eq=False)
class Quota:
    name: str
    burst: int
    window: int
    item: RateLimitItem

    @classmethod
    def of(cls, name: str, per_second: float, burst: int) -> Quota | None:
        """``burst`` requests per ``burst / per_second`` seconds, rounded up to whole seconds (the window
        the store and the header speak in), so the sustained rate is never above ``per_second``."""
        if per_second <= 0 or burst <= 0:
            return None
        window = max(1, math.ceil(burst / per_second))
        return cls(name, burst, window, RateLimitItemPerSecond(burst, window, namespace="crm"))

    @property
    def policy(self) -> str:
        return f'"{self.name}";q={self.burst};w={self.window}'

    @property
    def flush_at(self) -> int:
        """Pending requests that make a bucket due for writing back."""
        return max(1, self.burst // 50)

    @property
    def low(self) -> int:
        """Below this many left, a bucket in use is read back every ``TICK``."""
        return self.burst // 10


class _Bucket:
    """One process's view of one bucket in the store."""

    __slots__ = ("ident", "left", "pending", "quota", "ready", "reset_at", "synced_at", "syncing", "used_at")

    def __init__(self, quota: Quota, ident: str, now: float) -> None:
        self.quota = quota
        self.ident = ident
        self.left = 0  # what the store said was left, less what this process admitted since
        self.pending = 0  # admitted here, not yet written to the store
        self.reset_at = now  # when the store expects to free the next request (monotonic)
        self.synced_at = -math.inf
        self.used_at = now
        self.syncing = False
        self.ready: asyncio.Event | None = None  # set while the first read from the store is under way


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.quotas = [
            q
            for q in (
                Quota.of("key", settings.rate_limit_key_per_second, settings.rate_limit_key_burst),
                Quota.of(
                    "workspace",
                    settings.rate_limit_workspace_per_second,
                    settings.rate_limit_workspace_burst,
                ),
            )
            if q is not None
        ]
        failures = settings.auth_failures_per_minute
        self.auth = Quota(AUTH_POLICY, failures, 60, RateLimitItemPerSecond(failures, 60, namespace="crm"))
        self._pool: redis.asyncio.ConnectionPool | None = None
        self.storage: Storage = MemoryStorage()
        if settings.redis_url:
            self._pool = redis.asyncio.ConnectionPool.from_url(
                settings.redis_url, socket_timeout=STORE_TIMEOUT, socket_connect_timeout=STORE_TIMEOUT
            )
            self.storage = RedisStorage(
                "async+" + settings.redis_url,
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix=settings.redis_key_prefix,
                connection_pool=self._pool,  # type: ignore[arg-type]  # handed on to redis.asyncio.Redis
            )
        self._limiter = SlidingWindowCounterRateLimiter(self.storage)
        self._buckets: dict[tuple[str, uuid.UUID], _Bucket] = {}
        self._due: set[_Bucket] = set()  # buckets to write back or read again at the next tick
        self._policy = ", ".join(q.policy for q in self.quotas).encode()
        self._auth_policy = self.auth.policy.encode()
        self._blocked: dict[str, float] = {}  # address -> monotonic time its failure budget frees up
        self._warned_at = -math.inf

    # -- the request path --------------------------------------------------------------------------

    async def admit(self, state: dict[str, Any], key_id: uuid.UUID, workspace_id: uuid.UUID) -> None:
        """Counts a request against the key's and the workspace's quotas, puts the RateLimit fields for
        the response in ``state`` (the ASGI scope's), and raises RateLimited when a quota is spent."""
        if not self.quotas:
            return
        now = time.monotonic()
        buckets = []
        refused: _Bucket | None = None
        for quota in self.quotas:
            ident = key_id if quota.name == "key" else workspace_id
            bucket = self._buckets.get((quota.name, ident))
            if bucket is None or bucket.ready is not None or (bucket.left <= 0 and now >= bucket.reset_at):
                bucket = await self._bucket(quota, ident, now)
            bucket.used_at = now
            buckets.append(bucket)
            if bucket.left <= 0 and refused is None:
                refused = bucket
        if refused is None:  # a request one quota refuses costs the other nothing
            for bucket in buckets:
                bucket.left -= 1
                bucket.pending += 1
                if bucket.pending >= bucket.quota.flush_at or bucket.left <= bucket.quota.low:
                    self._due.add(bucket)
        else:
            self._due.add(refused)
        fields = ", ".join(
            f'"{b.quota.name}";r={max(0, b.left)};t={max(0, math.ceil(b.reset_at - now))}' for b in buckets
        )
        state["ratelimit"] = [(b"ratelimit-policy", self._policy), (b"ratelimit", fields.encode())]
        if refused is not None:
            quota = refused.quota
            retry_after = max(1, math.ceil(refused.reset_at - now))
            whose = "API key" if quota.name == "key" else quota.name
            raise RateLimited(
                f"Over this {whose}'s quota of {quota.burst} requests per {quota.window} s; "
                f"retry after {retry_after} s",
                retry_after,
            )

    async def _bucket(self, quota: Quota, ident: uuid.UUID, now: float) -> _Bucket:
        """The bucket, read from the store first when this process has no view of it yet, or has spent it
        and the store may have freed some since."""
        bucket = self._buckets.get((quota.name, ident))
        if bucket is None:
            bucket = self._buckets[(quota.name, ident)] = _Bucket(quota, str(ident), now)
            bucket.ready = asyncio.Event()
            try:
                await self._sync(bucket)
            finally:
                bucket.ready.set()
                bucket.ready = None
        elif bucket.ready is not None:
            await bucket.ready.wait()
        elif not bucket.syncing and now - bucket.synced_at >= TICK:
            await self._sync(bucket)
        return bucket

    # -- failed authentication ---------------------------------------------------------------------

    async def before_lookup(self, state: dict[str, Any], address: str) -> None:
        """Raises RateLimited when ``address`` has spent its failure budget (no key lookup for it then)."""
        if not self.auth.burst:
            return
        blocked_until = self._blocked.get(address)
        if blocked_until is not None:
            if blocked_until > time.monotonic():
                raise self._auth_refused(state, 0, blocked_until)
            del self._blocked[address]
        try:
            over = not await self._limiter.test(self.auth.item, AUTH_POLICY, address)
        except (StorageError, OSError) as exc:
            self._store_failed(exc)
            return
        if over:
            left, until = await self._auth_stats(address)
            self._block(address, until)
            raise self._auth_refused(state, left, until)

    async def failed(self, state: dict[str, Any], address: str) -> None:
        """Counts a refused key against ``address``; raises RateLimited when that spent its budget, and
        otherwise leaves the auth quota's RateLimit fields for the 401 in ``state``."""
        if not self.auth.burst:
            return
        try:
            counted = await self._limiter.hit(self.auth.item, AUTH_POLICY, address)
            left, until = await self._auth_stats(address)
        except (StorageError, OSError) as exc:
            self._store_failed(exc)
            return
        if not counted:
            self._block(address, until)
            raise self._auth_refused(state, 0, until)
        state["ratelimit"] = self._auth_fields(left, until)

    async def _auth_stats(self, address: str) -> tuple[int, float]:
        stats = await self._limiter.get_window_stats(self.auth.item, AUTH_POLICY, address)
        return stats.remaining, time.monotonic() + max(0.0, stats.reset_time - time.time())

    def _block(self, address: str, until: float) -> None:
        if len(self._blocked) > 10_000:
            self._blocked.clear()
        # the store's reset time is when one more failure is allowed; block for at least a second
        self._blocked[address] = max(until, time.monotonic() + 1)

    def _auth_fields(self, left: int, until: float) -> list[Header]:
        reset = max(0, math.ceil(until - time.monotonic()))
        limit = f'"{AUTH_POLICY}";r={left};t={reset}'.encode()
        return [(b"ratelimit-policy", self._auth_policy), (b"ratelimit", limit)]

    def _auth_refused(self, state: dict[str, Any], left: int, until: float) -> RateLimited:
        retry_after = max(1, math.ceil(until - time.monotonic()))
        state["ratelimit"] = self._auth_fields(left, until)
        return RateLimited(
            f"Too many failed authentications from this address ({self.auth.burst} a minute); "
            f"retry after {retry_after} s",
            retry_after,
        )

    # -- writing back to the store -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: every ``TICK`` writes back the buckets the request path marked due; every
        ``MAX_AGE`` also the rest that have pending requests, and forgets buckets idle for two windows."""
        swept = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK)
            now = time.monotonic()
            due, self._due = self._due, set()
            for bucket in due:
                if not bucket.syncing and bucket.ready is None and now - bucket.synced_at >= TICK:
                    await self._sync(bucket)
            if now - swept >= MAX_AGE:
                swept = now
                await self._sweep(now)

    async def _sweep(self, now: float, final: bool = False) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.syncing or bucket.ready is not None:
                continue
            if bucket.pending and (final or now - bucket.synced_at >= MAX_AGE):
                await self._sync(bucket, read=bucket.left <= bucket.quota.burst // 2)
            elif not bucket.pending and now - bucket.used_at > 2 * bucket.quota.window + MAX_AGE:
                del self._buckets[key]

    async def _sync(self, bucket: _Bucket, read: bool = True) -> None:
        """Writes the bucket's pending requests to the store and reads back what is left (unless ``read``
        is false and the store took them all: a sweep of a bucket that is far from empty writes only)."""
        quota, ident, limiter = bucket.quota, bucket.ident, self._limiter
        bucket.syncing = True
        pending, bucket.pending = bucket.pending, 0
        try:
            try:
                took = not pending or await limiter.hit(quota.item, quota.name, ident, cost=pending)
                if took and not read:
                    bucket.synced_at = time.monotonic()
                    return
                if not took:
                    # more was admitted than the store had left (other processes took it meanwhile):
                    # spend what is left, so that they see the bucket empty too
                    left = (await limiter.get_window_stats(quota.item, quota.name, ident)).remaining
                    if left > 0:
                        await limiter.hit(quota.item, quota.name, ident, cost=min(pending, left))
                stats = await limiter.get_window_stats(quota.item, quota.name, ident)
                left, reset_in = stats.remaining, max(0.0, stats.reset_time - time.time())
            except (StorageError, OSError) as exc:
                # fail open: carry on with a full bucket until the store answers again
                self._store_failed(exc)
                left, reset_in = quota.burst, 0.0
            now = time.monotonic()
            bucket.left = left - bucket.pending  # less what was admitted while the store answered
            bucket.reset_at = now + reset_in
            bucket.synced_at = now
        finally:
            bucket.syncing = False

    def _store_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 60:
            self._warned_at = now
            log.warning("rate-limit store did not answer (quotas not enforced meanwhile): %s", exc)

    async def close(self) -> None:
        await self._sweep(time.monotonic(), final=True)
        if self._pool is not None:
            await self._pool.disconnect()
