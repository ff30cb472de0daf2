"""The crm-api command: serve, worker, migrate, openapi, create-key, import, export. Progress goes to
stderr; a created key is printed alone on the last line of stdout."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
from pathlib import Path

from . import __version__, keytool, masterkey, private_files
from .config import get_settings


def _err(message: str) -> None:
    print(f"crm-api: {message}", file=sys.stderr)


def _resolve_url() -> str:
    from .db import database_url

    url = database_url()
    # processes started from this one are handed the URL, so they cannot tell the database is embedded:
    # hand them its master key file too
    key_file = masterkey.embedded_key_file(get_settings())
    if key_file is not None:
        os.environ["CRM_SECRET_KEY_FILE"] = str(key_file)
    return url


async def _bootstrap(url: str, key_file: Path) -> str | None:
    """On first start: a ``default`` workspace and one admin key, returned once. The key is written to
    ``key_file`` (mode 0600) before they commit: a key nobody can read is never made."""
    from .admin import keys
    from .db import create_pool

    pool = await create_pool(url, 1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            workspace_id, created = await keys.ensure_workspace(conn, "default")
            if not created:
                return None
            key, _ = await keys.create_key(conn, workspace_id, "admin (first start)", ["*", "admin"])
            private_files.replace(key_file, key + "\n")
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


def _migrate(url: str) -> None:
    from .migrate import upgrade

    done = upgrade(url)
    if done.before == done.head:
        _err(f"the database is at the newest migration ({done.head})")
    else:
        _err(f"migrated the database from {done.before or 'empty'} to {done.head}")


def _ready(url: str, args: argparse.Namespace) -> bool:
    """Migrate before starting, or with ``--no-migrate`` check that this version can run on the schema."""
    from .migrate import behind

    if not args.no_migrate:
        _migrate(url)
        return True
    problem = behind(url)
    if problem:
        _err(problem)
    return problem is None


def cmd_migrate(_: argparse.Namespace) -> int:
    _migrate(_resolve_url())
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

    url = _resolve_url()
    _migrate(url)
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
    from uvicorn.config import STARTUP_FAILURE

    from . import logs, multiproc

    # first: its worker processes inherit it, and each must find it when it first imports prometheus_client
    multiproc.prepare(get_settings().metrics_dir)

    url = _resolve_url()
    masterkey.load(get_settings())  # a missing or malformed key stops here, before any worker starts
    if not _ready(url, args):
        return 2
    path = get_settings().data_dir / "admin-key"
    key = asyncio.run(_bootstrap(url, path))
    if key:
        # stdout is the service log under Docker or systemd: the key is in a file only its owner reads
        _err(f"first start: created workspace 'default'; its admin API key is in {path} (mode 0600)")
        if sys.stdout.isatty():
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
    config = uvicorn.Config(
        "crm_api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        log_config=logs.uvicorn_config(settings),
        access_log=args.access_log,
        server_header=False,  # no banner naming the server software (Date stays: RFC 9110 wants it)
        # uvicorn's httptools protocol plus a header deadline, a header size cap and a connection cap
        http="crm_api.httpserver:GuardedHttpTools",
        timeout_keep_alive=settings.keep_alive_s,
    )
    if args.workers > 1:
        from .supervisor import Supervisor

        # a listening socket per worker (SO_REUSEPORT), not uvicorn's one shared socket: see supervisor.py
        return Supervisor(config, args.workers).run()
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else STARTUP_FAILURE


async def _work(url: str, processes_label: str) -> None:
    from . import logs, metrics
    from .automations import runner as automations
    from .bulk import worker as bulk_worker
    from .db import Timeouts, create_pool
    from .scoring import worker as scoring_worker
    from .segments import worker as segment_worker
    from .webhooks.dispatcher import Dispatcher

    settings = get_settings()
    logs.configure(settings)
    pool = await create_pool(url, 4, Timeouts.of(settings))
    sampler = asyncio.create_task(metrics.sample_pool_forever(pool))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _err(f"dispatcher {processes_label} running; SIGTERM or Ctrl-C stops it gracefully")
    # as in the API processes (app.py): the start-up heap frozen, so a full collection no longer walks it,
    # and young collections rarer; a segment step's thousands of short-lived rows and tuples had made the
    # collector most of a worker's Python time with many segment entries
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG, *gc.get_threshold()[1:])
    # imports and exports run in the workers only, beside their dispatcher: never in an API process
    bulk = asyncio.create_task(bulk_worker.run_forever(pool, settings, stop))
    # so does segment membership: the API's writes never wait for it
    segments = asyncio.create_task(segment_worker.run_forever(pool, settings, stop))
    # and lead scores, with the same machinery
    scoring = asyncio.create_task(scoring_worker.run_forever(pool, settings, stop))
    # automations too: they follow the event log, workers only
    automating = asyncio.create_task(
        automations.run_forever(
            pool, settings.automation_poll_seconds, stop, settings.automation_clock_offset_s
        )
    )
    try:
        await Dispatcher(pool, settings).run(stop)
    finally:
        stop.set()
        await bulk
        await segments
        await scoring
        await automating
        sampler.cancel()
        await pool.close()
        metrics.process_exit()


_GC_YOUNG = 10_000
"""Allocations between a worker's young collections (CPython's default is 700; the API's, app.py)."""


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
    from . import multiproc

    multiproc.prepare(get_settings().metrics_dir)
    url = _resolve_url()
    masterkey.load(get_settings())
    if not _ready(url, args):
        return 2
    if args.metrics_port:
        from . import metrics

        metrics.serve_http(args.metrics_host, args.metrics_port)
        _err(f"metrics on http://{args.metrics_host}:{args.metrics_port}/metrics")
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

    # SIGTERM to this process stops its dispatchers gracefully, then it exits through Python (so its
    # temporary metrics directory is removed) rather than dying by the signal and leaving them running
    def stop(*_: object) -> None:
        for p in procs:
            p.terminate()

    signal.signal(signal.SIGTERM, stop)
    for p in procs:
        p.join()
    return 0


async def _bulk(args: argparse.Namespace) -> int:
    from . import bulkcli

    async with bulkcli.client(args.url, args.key) as client:
        try:
            if args.func is cmd_import:
                job = await bulkcli.run_import(
                    client,
                    args.file,
                    args.object,
                    mapping=bulkcli.load_json(args.mapping),
                    upsert_key=args.upsert_key,
                    dry_run=args.dry_run,
                    create_missing_companies=not args.no_create_missing_companies,
                )
                return 0 if job["status"] == "succeeded" else 1
            fields = [f.strip() for f in args.fields.split(",")] if args.fields else None
            await bulkcli.run_export(
                client,
                args.object,
                args.output,
                format=args.format,
                filter=bulkcli.load_json(args.filter),
                fields=fields,
                include_archived=args.include_archived,
            )
            return 0
        except bulkcli.Failed as exc:
            _err(str(exc))
            return 2


def cmd_import(args: argparse.Namespace) -> int:
    return asyncio.run(_bulk(args))


def cmd_export(args: argparse.Namespace) -> int:
    return asyncio.run(_bulk(args))


def _parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="crm-api",
        description=__doc__,
        epilog="`crm-api COMMAND --help` lists a command's options. Settings come from CRM_* environment "
        "variables (README.md, Settings).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # the options of every command that opens the database
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="PATH",
        help="where the embedded PostgreSQL keeps its data when CRM_DATABASE_URL is unset "
        f"(default: {settings.data_dir}; CRM_DATA_DIR sets it too)",
    )
    starting = argparse.ArgumentParser(add_help=False)
    starting.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not run the migrations, only refuse to start on a schema older than this version, for a "
        "database user without DDL rights or when `crm-api migrate` runs as a one-off step before a rolling "
        "start (default: migrate first, under an advisory lock, so replicas starting together migrate once)",
    )

    def command(name: str, summary: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary, parents=list(parents))

    serve = command(
        "serve",
        "migrate, create the 'default' workspace and an admin key on first start, and serve the API "
        "(on an embedded PostgreSQL when CRM_DATABASE_URL is unset)",
        database,
        starting,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    serve.add_argument(
        "--workers", type=int, default=1, help="API processes sharing the port (default: %(default)s)"
    )
    serve.add_argument(
        "--access-log", action="store_true", help="log every request through uvicorn (default: off)"
    )
    serve.add_argument(
        "--no-dispatcher",
        action="store_true",
        help="send no webhooks from the API processes, leave it to `crm-api worker` (default: each API "
        "process runs a dispatcher unless CRM_RUN_DISPATCHER=false)",
    )
    limits = serve.add_argument_group("limits (each overrides its CRM_ setting)")
    limits.add_argument(
        "--header-timeout", type=float, metavar="S", help="seconds to send a request's headers (default: 10)"
    )
    limits.add_argument(
        "--max-header-bytes", type=int, metavar="N", help="request line and headers (default: 32768)"
    )
    limits.add_argument(
        "--max-connections", type=int, metavar="N", help="connections per process (default: 1000)"
    )
    limits.add_argument(
        "--keep-alive", type=int, metavar="S", help="idle seconds before closing (default: 5)"
    )
    limits.add_argument(
        "--request-timeout",
        type=float,
        metavar="S",
        help="deadline of a request, headers to response (default: 30)",
    )
    serve.set_defaults(func=cmd_serve)

    worker = command("worker", "run webhook dispatchers only (no API)", database, starting)
    worker.add_argument(
        "--processes", type=int, default=1, help="dispatcher processes to run (default: %(default)s)"
    )
    worker.add_argument(
        "--metrics-port", type=int, default=0, help="serve /metrics on this port (default: 0, none)"
    )
    worker.add_argument(
        "--metrics-host", default="127.0.0.1", help="address for /metrics (default: %(default)s)"
    )
    worker.set_defaults(func=cmd_worker)

    migrate = command(
        "migrate", "upgrade the database to the newest migration (under an advisory lock)", database
    )
    migrate.set_defaults(func=cmd_migrate)

    spec = command("openapi", "write the OpenAPI document")
    spec.add_argument(
        "--output",
        default="openapi/openapi.json",
        metavar="PATH",
        help="file to write (default: %(default)s)",
    )
    spec.set_defaults(func=cmd_openapi)

    key = command("create-key", "create an API key (and its workspace if needed)", database)
    key.add_argument("--workspace", required=True, help="workspace name, created if new (required)")
    key.add_argument(
        "--scopes",
        required=True,
        help="comma-separated, e.g. contacts:read,contacts:write; * for every resource, admin for keys "
        "(required)",
    )
    key.add_argument(
        "--name",
        default="created by crm-api create-key",
        help="label shown when listing keys (default: %(default)r)",
    )
    key.set_defaults(func=cmd_create_key)
    keytool.add_parser(sub)

    # the bulk commands are clients of a running API: they open no database
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--url", default="http://127.0.0.1:8000", help="the API (default: %(default)s)")
    client.add_argument("--key", required=True, help="an API key (required)")
    client.add_argument(
        "--object",
        required=True,
        choices=("contacts", "companies", "deals", "activities", "tickets"),
        help="what the file holds (required)",
    )
    imp = command(
        "import", "import a CSV (or .ndjson) file through the API, with a progress bar and a summary", client
    )
    imp.add_argument("file", type=Path, help="the file: CSV with a header line, or .ndjson/.jsonl")
    imp.add_argument("--mapping", metavar="JSON_FILE", help="column to field, as POST /v1/imports takes it")
    imp.add_argument(
        "--upsert-key", help="email, domain or external_ids.<source> (default: create every row)"
    )
    imp.add_argument("--dry-run", action="store_true", help="judge every row, write nothing")
    imp.add_argument(
        "--no-create-missing-companies",
        action="store_true",
        help="a company.domain no live company has fails its row (default: the company is made)",
    )
    imp.set_defaults(func=cmd_import)
    exp = command("export", "export every object (or a filter's) to a file through the API", client)
    exp.add_argument(
        "--output", type=Path, required=True, metavar="PATH", help="the file to write (required)"
    )
    exp.add_argument("--format", choices=("csv", "ndjson"), default="csv", help="(default: %(default)s)")
    exp.add_argument("--filter", metavar="JSON_FILE", help="a filter in the search grammar")
    exp.add_argument("--fields", help="comma-separated columns (default: every field)")
    exp.add_argument("--include-archived", action="store_true", help="archived objects too")
    exp.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "data_dir", None) is not None:
        # settings are read from the environment, and serve's worker processes read it again
        os.environ["CRM_DATA_DIR"] = str(args.data_dir.resolve())
        get_settings.cache_clear()
    from . import embedded

    try:
        result: int = args.func(args)
    except masterkey.MasterKeyError as exc:
        _err(str(exc))
        result = 2
    finally:
        embedded.stop()  # only acts when this process started (or joined) an embedded server
    return result


if __name__ == "__main__":
    sys.exit(main())
