"""The ``crm-api`` command: serve, worker, migrate, openapi, create-key. Progress goes to stderr; a
created key is printed alone on the last line of stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from .config import get_settings


def _err(message: str) -> None:
    print(f"crm-api: {message}", file=sys.stderr)


def _resolve_url() -> str:
    from .db import database_url

    return database_url()


async def _bootstrap(url: str) -> str | None:
    """On first start: a ``default`` workspace and one admin key, returned once."""
    from .admin import keys
    from .db import create_pool

    pool = await create_pool(url, 1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            workspace_id, created = await keys.ensure_workspace(conn, "default")
            if not created:
                return None
            key, _ = await keys.create_key(conn, workspace_id, "admin (first start)", ["*", "admin"])
            return key
    finally:
        await pool.close()


async def _create_key(url: str, workspace: str, scopes: list[str], name: str) -> str:
    from .admin import keys
    from .db import create_pool

    pool = await create_pool(url, 1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            workspace_id, created = await keys.ensure_workspace(conn, workspace)
            if created:
                _err(f"created workspace '{workspace}'")
            key, _ = await keys.create_key(conn, workspace_id, name, scopes)
            return key
    finally:
        await pool.close()


def cmd_migrate(_: argparse.Namespace) -> int:
    from .migrate import upgrade

    url = _resolve_url()
    upgrade(url)
    _err("database is at the newest migration")
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from .app import create_app

    document = create_app(url="postgresql://unused").openapi()
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    _err(f"wrote {path}")
    return 0


def cmd_create_key(args: argparse.Namespace) -> int:
    from .errors import CRMError
    from .migrate import upgrade

    url = _resolve_url()
    upgrade(url)
    scopes = [s.strip() for s in args.scopes.replace("|", ",").split(",") if s.strip()]
    try:
        key = asyncio.run(_create_key(url, args.workspace, scopes, args.name))
    except CRMError as exc:
        _err(exc.detail + "".join(f" ({e.path}: {e.message})" for e in exc.errors))
        return 2
    print(key)
    return 0


_SERVE_LIMITS = {
    "header_timeout": "CRM_HEADER_TIMEOUT_S",
    "max_header_bytes": "CRM_MAX_HEADER_BYTES",
    "max_connections": "CRM_MAX_CONNECTIONS",
    "keep_alive": "CRM_KEEP_ALIVE_S",
    "request_timeout": "CRM_REQUEST_TIMEOUT_S",
}


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .migrate import upgrade

    url = _resolve_url()
    upgrade(url)
    key = asyncio.run(_bootstrap(url))
    if key:
        _err("first start: created workspace 'default' with this admin API key (shown once, keep it):")
        print(key, flush=True)
    # Worker processes import the app afresh; hand them the URL resolved here (embedded or configured), and
    # the limits given as options (the HTTP protocol and the app read them from the settings).
    os.environ["CRM_DATABASE_URL"] = url
    if args.no_dispatcher:
        os.environ["CRM_RUN_DISPATCHER"] = "false"
    for option, variable in _SERVE_LIMITS.items():
        if getattr(args, option) is not None:
            os.environ[variable] = str(getattr(args, option))
    get_settings.cache_clear()
    settings = get_settings()
    # uvicorn re-raises SIGTERM after its graceful shutdown; exit through Python instead of dying by the
    # signal, so the embedded PostgreSQL this process started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _err(f"serving on http://{args.host}:{args.port} (docs at /docs)")
    uvicorn.run(
        "crm_api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        access_log=args.access_log,
        # uvicorn's httptools protocol plus a header deadline, a header size cap and a connection cap
        http="crm_api.httpserver:GuardedHttpTools",
        timeout_keep_alive=settings.keep_alive_s,
    )
    return 0


async def _work(url: str, processes_label: str) -> None:
    from .db import Timeouts, create_pool
    from .webhooks.dispatcher import Dispatcher

    settings = get_settings()
    pool = await create_pool(url, 4, Timeouts.of(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _err(f"dispatcher {processes_label} running; SIGTERM or Ctrl-C stops it gracefully")
    try:
        await Dispatcher(pool, settings).run(stop)
    finally:
        await pool.close()


def _run_worker(url: str, label: str) -> None:
    """One dispatcher process on uvloop where installed (uvicorn[standard] brings it): asyncio's pure-Python
    socket transport's write alone was 14% of a dispatcher's CPU under py-spy."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_work(url, label))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_work(url, label))


def cmd_worker(args: argparse.Namespace) -> int:
    from .migrate import upgrade

    url = _resolve_url()
    upgrade(url)
    if args.processes <= 1:
        _run_worker(url, "process")
        return 0
    import multiprocessing

    os.environ["CRM_DATABASE_URL"] = url
    procs = [
        multiprocessing.Process(target=lambda n=n: _run_worker(url, f"#{n}"), daemon=False)
        for n in range(args.processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (embedded PostgreSQL when CRM_DATABASE_URL is unset)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument("--no-dispatcher", action="store_true", help="do not send webhooks from this process")
    limits = serve.add_argument_group("limits (each overrides its CRM_ setting)")
    limits.add_argument(
        "--header-timeout", type=float, metavar="S", help="seconds to send a request's headers (10)"
    )
    limits.add_argument("--max-header-bytes", type=int, metavar="N", help="request line and headers (32768)")
    limits.add_argument("--max-connections", type=int, metavar="N", help="connections per process (1000)")
    limits.add_argument("--keep-alive", type=int, metavar="S", help="idle seconds before closing (5)")
    limits.add_argument(
        "--request-timeout", type=float, metavar="S", help="deadline of a request, headers to response (30)"
    )
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run webhook dispatchers only (no API)")
    worker.add_argument("--processes", type=int, default=1)
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="upgrade the database to the newest migration").set_defaults(
        func=cmd_migrate
    )
    spec = sub.add_parser("openapi", help="write the OpenAPI document")
    spec.add_argument("--output", default="openapi/openapi.json")
    spec.set_defaults(func=cmd_openapi)
    key = sub.add_parser("create-key", help="create an API key (and its workspace if needed)")
    key.add_argument("--workspace", required=True)
    key.add_argument(
        "--scopes", required=True, help="comma-separated, e.g. contacts:read,contacts:write or *"
    )
    key.add_argument("--name", default="created by crm-api create-key")
    key.set_defaults(func=cmd_create_key)
    args = parser.parse_args(argv)
    from . import embedded

    try:
        result: int = args.func(args)
    finally:
        embedded.stop()  # only acts when this process started (or joined) an embedded server
    return result


if __name__ == "__main__":
    sys.exit(main())
