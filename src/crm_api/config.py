"""Settings, read from the environment (prefix ``CRM_``); nothing else reads ``os.environ``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("crm-api"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    database_url: str | None = None
    """``postgresql+asyncpg://...``; unset means an embedded PostgreSQL in ``data_dir``."""
    data_dir: Path = _default_data_dir()
    test_database_url: str | None = None
    secret_key: SecretStr | None = None
    """The master key sealing stored secrets (``crm-api secrets new-key`` makes one); during a rotation,
    several comma-separated: the first seals, each opens. Required with ``database_url``; with the embedded
    database ``data_dir/secret.key`` is made on first start and used (see masterkey.py)."""
    secret_key_file: Path | None = None
    """A file holding the master key(s), one a line, instead of ``secret_key`` (a Docker/systemd secret)."""
    pool_size: int = 10
    phone_region: str = "US"
    """The region (ISO 3166 alpha-2) a phone number without a country code is read in, when it is stored
    for search and when a search names it (``textsearch.py``)."""
    statement_timeout_ms: int = 15_000
    """PostgreSQL's ``statement_timeout`` on the API's connections: a statement running longer is cancelled
    (503 ``timeout``). Set in the connection's startup packet, so it costs no round trip."""
    lock_timeout_ms: int = 3_000
    """PostgreSQL's ``lock_timeout``: a statement waiting longer for a lock gives up (503 ``timeout``), so a
    lock held elsewhere cannot make requests pile up until the pool is exhausted."""
    pool_timeout_s: float = 10.0
    """How long a request waits for a free pooled connection before it is a 503 ``timeout``."""
    connect_timeout_s: float = 5.0
    """How long opening a database connection may take (an unreachable host is a 503, not a minute's hang)."""
    request_timeout_s: float = 30.0
    """The deadline of a request, from its headers to its response: past it the request is cancelled, its
    transaction rolled back, and the answer is a 503 ``timeout`` (408 while the body was still arriving)."""
    upload_timeout_s: float = 3600.0
    """The deadline of an import's file sent whole as ``multipart/form-data`` (8 GiB at 2.5 MiB/s)."""
    header_timeout_s: float = 10.0
    """``serve``: a connection must deliver a request's headers within this long, else it is closed."""
    max_header_bytes: int = 32 * 1024
    """``serve``: a request line plus headers larger than this is refused (431) and the connection closed."""
    max_connections: int = 1000
    """``serve``: open connections per process; one more is answered 503 and closed."""
    keep_alive_s: int = 5
    """``serve``: an idle keep-alive connection is closed after this long."""
    max_body_bytes: int = 2 * 1024 * 1024
    max_upload_bytes: int = 8 * 1024**3
    """The body limit of an import's file sent whole as ``multipart/form-data`` (streamed to the database in
    parts, never held in memory); every other body has ``max_body_bytes``."""
    auth_cache_seconds: float = 5.0
    """How long a verified API key is trusted without asking the database again (revocation delay
    for other processes; the process that revokes forgets the key at once)."""
    key_use_seconds: float = 60.0
    """``last_used_at`` of an API key is written at most once per this many seconds (key_use.py)."""
    key_use_flush_seconds: float = 10.0
    definitions_cache: bool = True
    """Keep each workspace's custom field definitions in memory, dropped by the NOTIFY a trigger sends when
    they change (resources/custom_fields/cache.py). Off on Citus, where that NOTIFY cannot reach us."""
    """How often a process writes the ``last_used_at`` of the keys it saw used, in one statement."""
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
    log_format: Literal["auto", "json", "text"] = "auto"
    """``json``: one JSON object a line (for a log collector); ``text``: aligned lines for a person at a
    terminal; ``auto``: text when stderr is a terminal, JSON otherwise."""
    cors_origins: str = ""
    """Comma-separated origins (``https://app.example.com``) whose pages may call the API from a browser;
    exact origins only (no ``*``: keys are credentials). Empty: no CORS headers at all."""
    metrics_dir: Path | None = None
    """Where ``serve`` and ``worker`` keep the per-process metric files that ``/metrics`` adds up (the
    PROMETHEUS_MULTIPROC_DIR); unset: a fresh temporary directory per run."""
    event_retention_days: int = 30
    webhook_allow_cidrs: str = ""
    """Comma-separated networks webhooks may reach although they are not public (``127.0.0.0/8`` in tests)."""
    run_dispatcher: bool = True
    """``crm-api serve`` runs a dispatcher in each API process unless this is off (``--no-dispatcher``)."""
    stream_heartbeat_s: float = 15.0
    """Idle seconds after which ``GET /v1/events/stream`` sends a comment, so proxies keep it open."""
    streams_per_key: int = 5
    """Event streams one API key may hold open at once, per API process (429 past it)."""
    dispatcher_batch: int = 100
    dispatcher_lease_seconds: float = 60.0
    dispatcher_poll_seconds: float = 2.0
    dispatcher_per_endpoint: int = 16
    """Requests in flight per endpoint per dispatcher, so one slow endpoint cannot hold every slot."""
    dispatcher_concurrency: int = 128
    sla_check_seconds: float = 30.0
    """How often each dispatcher process looks for tickets past an SLA due time (0: never)."""
    bulk_lease_seconds: float = 60.0
    """How long an import or export stays with a worker that stopped renewing its lease (a killed one)
    before another worker takes it over; a live worker renews it every third of this."""
    bulk_import_chunk_rows: int = 500
    """Rows an import writes per transaction (one batch write, its events and the job's progress): bigger
    chunks spread each chunk's fixed round trips over more rows, and hold the rows' key locks longer; a
    killed worker redoes at most one."""
    bulk_poll_seconds: float = 2.0
    """How often each ``crm-api worker`` process looks for queued imports and exports (0: never)."""
    segment_poll_seconds: float = 0.2
    """How often each ``crm-api worker`` process follows the event log for segment membership and lead
    scores (0: never); it looks again at once while there is more to read."""
    segment_busy_seconds: float = 0.5
    """While writes keep coming, the longest a follow step waits after the previous one began: half a poll
    for a trickle of writes, growing with the events the previous step read to this much from 100 of them
    (a step costs mostly per step, so fewer, larger steps cost a stream of writes less, for at most this
    much more latency)."""
    segment_build_chunk: int = 2000
    """Objects a dynamic segment's build evaluates per transaction (each well inside the statement timeout;
    the position is kept between them, so a killed worker's successor resumes there)."""
    segment_build_attempts: int = 5
    """Failed chunks in a row after which a build gives up and the segment's ``status`` is ``failed``."""
    segment_relative_seconds: float = 60.0
    """How often dynamic segments whose filter holds a relative time (``-30d``) are evaluated whole, so
    members leave as they age out; and lead scores that change with time alone are brought up to date."""
    automation_poll_seconds: float = 0.2
    """How often each ``crm-api worker`` process looks for events past a workspace's automation cursor
    (0: never). The look is one indexed statement."""
    automation_clock_offset_s: float = 0.0
    """Moves the clock schedule triggers are checked by (tests run a worker days ahead); 0 in production."""
    webhook_retry_scale: float = 1.0
    """Multiplies the retry ladder (5 s, 5 min, ... 24 h); tests shrink it to fit in seconds."""

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            parts = urlsplit(origin)
            exact = (
                parts.scheme in ("http", "https") and parts.netloc and not parts.path and "*" not in origin
            )
            if not exact or parts.query or parts.fragment or parts.username:
                raise ValueError(f"{origin!r} is not an exact origin such as https://app.example.com")
        return value

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
