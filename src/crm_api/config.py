"""Settings, read from the environment (prefix ``CRM_``); nothing else reads ``os.environ``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("crm-api"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    database_url: str | None = None
    """``postgresql+asyncpg://...``; unset means an embedded PostgreSQL in ``data_dir``."""
    data_dir: Path = _default_data_dir()
    test_database_url: str | None = None
    pool_size: int = 10
    max_body_bytes: int = 2 * 1024 * 1024
    auth_cache_seconds: float = 5.0
    """How long a verified API key is trusted without asking the database again (revocation delay
    for other processes; the process that revokes forgets the key at once)."""
    redis_url: str | None = None
    """``redis://host:6379/0``: the rate-limit buckets live there, shared by every API process; unset: each
    process keeps its own (with ``--workers N`` a client then gets up to N times the quota)."""
    redis_key_prefix: str = "crm-api"
    """Prefixes every key this service writes to Redis (several deployments can share one server)."""
    rate_limit_key_per_second: float = 1000.0
    """Each API key's sustained rate; 0 turns the per-key limit off."""
    rate_limit_key_burst: int = 2000
    """Requests an API key may send at once after a quiet spell (the bucket's size)."""
    rate_limit_workspace_per_second: float = 5000.0
    """The sustained rate of all of a workspace's keys together; 0 turns the per-workspace limit off."""
    rate_limit_workspace_burst: int = 10000
    auth_failures_per_minute: int = 20
    """Refused API keys (unknown, revoked) accepted per client address per minute before 429; 0: unlimited."""
    idempotency_ttl_hours: int = 48
    log_level: str = "info"
    event_retention_days: int = 30
    webhook_allow_cidrs: str = ""
    """Comma-separated networks webhooks may reach although they are not public (``127.0.0.0/8`` in tests)."""
    run_dispatcher: bool = True
    """``crm-api serve`` runs a dispatcher in each API process unless this is off (``--no-dispatcher``)."""
    dispatcher_batch: int = 100
    dispatcher_lease_seconds: float = 60.0
    dispatcher_poll_seconds: float = 2.0
    dispatcher_per_endpoint: int = 16
    """Requests in flight per endpoint per dispatcher, so one slow endpoint cannot hold every slot."""
    dispatcher_concurrency: int = 128
    sla_check_seconds: float = 30.0
    """How often each dispatcher process looks for tickets past an SLA due time (0: never)."""
    webhook_retry_scale: float = 1.0
    """Multiplies the retry ladder (5 s, 5 min, ... 24 h); tests shrink it to fit in seconds."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
