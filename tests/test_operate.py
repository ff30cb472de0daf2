"""Operating a real ``crm-api serve --workers 2`` on a database of its own: one /metrics scrape adds up both
worker processes (parsed with Prometheus's text parser), the dispatcher's and the SLA job's metrics, CORS as
a browser meets it (headless Chromium, pages served from a listed and an unlisted origin), and its log: JSON
lines, one per request, with no key and no personal data in it.

The tests share one server and run in order; the last one stops it and reads everything it logged.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crm_api.migrate import upgrade

POOL_SIZE = 3
EMAIL = f"ada.{uuid.uuid4().hex[:8]}@example.com"
OTHER_EMAIL = f"grace.{uuid.uuid4().hex[:8]}@example.com"
NAME = f"Adelind{uuid.uuid4().hex[:6]}"  # a person's name: personal data too


def _clean_env() -> dict[str, str]:
    """The environment without CRM_ and PROMETHEUS_ settings, but with the run's master key."""
    keep = ("CRM_SECRET_KEY",)
    return {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "PROMETHEUS_")) or k in keep}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _admin(url: str, statement: str, *args: object) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


class Site(ThreadingHTTPServer):
    """A web server on 127.0.0.1: ``page`` on GET /, and a webhook receiver on POST (/ok: 200, else 503
    with Retry-After: an hour)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SiteHandler)
        self.port = self.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.page = ""
        self.hooks: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _SiteHandler(BaseHTTPRequestHandler):
    server: Site

    def do_GET(self) -> None:
        body = self.server.page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.hooks.append(self.path)
        self.send_response(200 if self.path == "/ok" else 503)
        if self.path != "/ok":
            self.send_header("Retry-After", "3600")  # nothing more until the test is over
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Served:
    url: str
    database: str
    key: str
    allowed: Site
    refused: Site
    log: Path
    proc: subprocess.Popen[bytes]
    keys_seen: list[str] = field(default_factory=list)

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **extra}

    def scrape(self) -> dict[str, Any]:
        """One scrape (on a connection of its own, so either worker may answer): name -> family."""
        r = httpx.get(f"{self.url}/metrics", headers={"Connection": "close"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        return {f.name: f for f in text_string_to_metric_families(r.text)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def _value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float | None:
    for s in families[family].samples if family in families else []:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return None


def _wait(what: str, check: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_run_removes_its_metrics_directory_and_those_of_killed_runs() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = Path(tempfile.mkdtemp(prefix=f"crm-api-metrics-{dead.pid}-"))
    (abandoned / "counter_1.db").write_bytes(b"")
    script = "from crm_api import multiproc; print(multiproc.prepare(None))"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CRM_", "PROMETHEUS_")) or k == "CRM_SECRET_KEY"
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    own = Path(done.stdout.strip())
    assert own.name.startswith("crm-api-metrics-")
    assert not own.exists()  # removed as that process exited
    assert not abandoned.exists()  # its maker is dead


@pytest.fixture(scope="module")
def served(database_url: str) -> Iterator[Served]:
    name = f"crm_test_ops_{uuid.uuid4().hex[:8]}"
    _admin(database_url, f'CREATE DATABASE "{name}"')
    base, _, query = database_url.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    workdir = Path(tempfile.mkdtemp(prefix="crm-test-ops-"))
    allowed, refused = Site(), Site()
    proc = None
    try:
        upgrade(url)
        # an Idempotency-Key record past its time: the server's first cleanup deletes it, and says so
        _admin(url, "INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), 'seed')")
        _admin(
            url,
            "INSERT INTO idempotency_keys"
            " (workspace_id, key, request_hash, status, headers, body, created_at)"
            " SELECT id, 'expired', 'h', 201, '{}', '{}', now() - interval '3 days'"
            " FROM workspaces WHERE name = 'seed'",
        )
        port = _free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CRM_", "PROMETHEUS_")) or k == "CRM_SECRET_KEY"
        }
        env.update(
            CRM_DATABASE_URL=url,
            CRM_DATA_DIR=str(workdir / "data"),
            CRM_CORS_ORIGINS=allowed.origin,
            CRM_POOL_SIZE=str(POOL_SIZE),
            CRM_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8",
            CRM_SLA_CHECK_SECONDS="1",
            CRM_DISPATCHER_POLL_SECONDS="0.5",
            CRM_LOG_FORMAT="json",
        )
        log = workdir / "serve.log"
        with (workdir / "stdout").open("wb") as out, log.open("wb") as err:
            cmd = [sys.executable, "-m", "crm_api", "serve", "--port", str(port), "--workers", "2"]
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        served = Served(f"http://127.0.0.1:{port}", url, "", allowed, refused, log, proc)

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{served.url}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        _wait("the server to be ready", up, 120)
        # a fresh database: the first start wrote an admin key to its file (stdout is not a terminal)
        served.key = (workdir / "data" / "admin-key").read_text().strip()
        assert served.key.startswith("crm_")
        served.keys_seen.append(served.key)
        # both workers have started (each adds its pool to the gauge)
        _wait(
            "both workers",
            lambda: _value(served.scrape(), "crm_db_pool_size", "crm_db_pool_size") == 2 * POOL_SIZE,
        )
        yield served
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        allowed.shutdown()
        refused.shutdown()
        _admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


def test_one_scrape_adds_up_every_worker_process(served: Served) -> None:
    missing = f"/v1/contacts/{uuid.uuid4()}"
    requests = 30
    for _ in range(requests):  # each on a new connection: the two workers share them
        r = httpx.get(served.url + missing, headers=served.headers(Connection="close"))
        assert r.status_code == 404
    for _ in range(8):
        families = served.scrape()
        assert families["crm_http_request_duration_seconds"].type == "histogram"
        labels = {"route": "/v1/contacts/{id}", "method": "GET", "status": "404"}
        count = _value(
            families, "crm_http_request_duration_seconds", "crm_http_request_duration_seconds_count", **labels
        )
        assert count == requests  # whichever worker answered, it counts both workers' requests
        inf = _value(
            families,
            "crm_http_request_duration_seconds",
            "crm_http_request_duration_seconds_bucket",
            le="+Inf",
            **labels,
        )
        assert inf == requests
        assert _value(families, "crm_db_pool_size", "crm_db_pool_size") == 2 * POOL_SIZE
        in_use = _value(families, "crm_db_pool_connections_in_use", "crm_db_pool_connections_in_use")
        # each worker's LISTEN connection for its dispatcher stays checked out
        assert in_use is not None and 2 <= in_use <= 2 * POOL_SIZE
        assert _value(families, "crm_db_pool_checkouts_waiting", "crm_db_pool_checkouts_waiting") == 0
        # no label is a path: ids would make series without end
        routes = {s.labels["route"] for s in families["crm_http_request_duration_seconds"].samples}
        assert not any(str(uuid.UUID(missing.rsplit("/", 1)[1])) in r for r in routes)


def test_deliveries_claims_outbox_and_sla_runs_are_measured(served: Served) -> None:
    hooks = served.allowed
    api = httpx.Client(base_url=served.url, headers=served.headers())
    for path in ("/ok", "/busy"):
        r = api.post("/v1/webhooks", json={"url": f"{hooks.origin}{path}", "event_types": ["contact.*"]})
        assert r.status_code == 201, r.text
        if path == "/busy":
            busy = r.json()["id"]
    assert api.post("/v1/contacts", json={"first_name": "Hook"}).status_code == 201

    def delivered() -> bool:
        families = served.scrape()
        return all(
            (_value(families, "crm_webhook_deliveries", "crm_webhook_deliveries_total", outcome=o) or 0) >= 1
            for o in ("succeeded", "retry")
        )

    _wait("a delivery that succeeded and one to retry", delivered)
    assert {"/ok", "/busy"} <= set(hooks.hooks)

    # the delivery to retry (in an hour, as the receiver asked), made due 100 s ago but leased, as if a
    # dispatcher that died held it: due and unsent
    _admin(
        served.database,
        "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '100 seconds',"
        " leased_until = now() + interval '1 hour' WHERE endpoint_id = %s AND status = 'pending'",
        busy,
    )
    families = served.scrape()
    assert _value(families, "crm_webhook_outbox_due", "crm_webhook_outbox_due") == 1
    age = _value(
        families, "crm_webhook_outbox_oldest_due_age_seconds", "crm_webhook_outbox_oldest_due_age_seconds"
    )
    assert age is not None and 100 <= age < 200
    claims = _value(
        families, "crm_webhook_claim_duration_seconds", "crm_webhook_claim_duration_seconds_count"
    )
    assert claims is not None and claims >= 2
    assert (_value(families, "crm_sla_job_runs", "crm_sla_job_runs_total", outcome="ok") or 0) >= 2
    _admin(served.database, "UPDATE webhook_deliveries SET status = 'failed' WHERE endpoint_id = %s", busy)
    assert _value(served.scrape(), "crm_webhook_outbox_due", "crm_webhook_outbox_due") == 0
    api.close()


def test_a_preflight_from_a_listed_origin_is_granted_with_204(served: Served) -> None:
    asked = {
        "Origin": served.allowed.origin,
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key,if-match,if-none-match",
    }
    r = httpx.options(f"{served.url}/v1/contacts/{uuid.uuid4()}", headers=asked)
    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["access-control-allow-origin"] == served.allowed.origin
    assert "PATCH" in r.headers["access-control-allow-methods"].split(", ")
    allowed = {h.lower() for h in r.headers["access-control-allow-headers"].split(", ")}
    assert {"authorization", "content-type", "idempotency-key", "if-match", "if-none-match"} <= allowed
    assert "access-control-allow-credentials" not in r.headers  # keys are not cookies

    r = httpx.options(f"{served.url}/v1/contacts", headers={**asked, "Origin": served.refused.origin})
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers

    r = httpx.get(f"{served.url}/v1/contacts", headers=served.headers(Origin=served.allowed.origin))
    assert r.headers["access-control-allow-origin"] == served.allowed.origin
    exposed = {h.lower() for h in r.headers["access-control-expose-headers"].split(", ")}
    assert {"etag", "x-request-id", "ratelimit", "ratelimit-policy", "retry-after", "location"} <= exposed
    r = httpx.get(f"{served.url}/v1/contacts", headers=served.headers(Origin=served.refused.origin))
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


_PAGE = """<!doctype html><meta charset="utf-8"><title>front end</title><script>
const API = "%(api)s", KEY = "%(key)s";
async function run(email, name) {
  const auth = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"};
  try {
    const body = JSON.stringify({first_name: name, email: email});
    const created = await fetch(API + "/v1/contacts",
      {method: "POST", headers: {...auth, "Idempotency-Key": "page-" + name}, body: body});
    const contact = await created.json();
    const replayed = await fetch(API + "/v1/contacts",
      {method: "POST", headers: {...auth, "Idempotency-Key": "page-" + name}, body: body});
    const etag = created.headers.get("ETag");
    const patched = await fetch(API + "/v1/contacts/" + contact.id,
      {method: "PATCH", headers: {...auth, "If-Match": etag}, body: JSON.stringify({last_name: "Lovelace"})});
    const stale = await fetch(API + "/v1/contacts/" + contact.id,
      {method: "PATCH", headers: {...auth, "If-Match": etag}, body: JSON.stringify({last_name: "Byron"})});
    return {
      created: created.status, id: contact.id, etag: etag, location: created.headers.get("Location"),
      request_id: created.headers.get("X-Request-ID"),
      replayed: replayed.headers.get("Idempotent-Replayed"),
      same_id: (await replayed.json()).id === contact.id,
      patched: patched.status, patched_etag: patched.headers.get("ETag"),
      last_name: (await patched.json()).last_name,
      stale: stale.status, stale_code: (await stale.json()).code,
    };
  } catch (error) {
    return {refused: String(error)};
  }
}
</script>"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_a_page_from_a_listed_origin_writes_through_cors_and_an_unlisted_one_is_refused(
    served: Served,
) -> None:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    page_source = _PAGE % {"api": served.url, "key": served.key}
    served.allowed.page = served.refused.page = page_source
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page()
            page.goto(served.allowed.origin + "/")
            done = page.evaluate("([email, name]) => run(email, name)", [EMAIL, NAME])
            assert "refused" not in done, done
            assert done["created"] == 201
            assert done["etag"] == '"1"' and done["location"].endswith(done["id"])
            assert done["request_id"]
            assert done["replayed"] == "true" and done["same_id"]
            assert (done["patched"], done["patched_etag"], done["last_name"]) == (200, '"2"', "Lovelace")
            assert (done["stale"], done["stale_code"]) == (412, "precondition_failed")

            page = browser.new_page()
            blocked: list[str] = []
            page.on("console", lambda m: blocked.append(m.text) if "CORS policy" in m.text else None)
            page.goto(served.refused.origin + "/")
            other = f"Other{uuid.uuid4().hex[:6]}"
            done = page.evaluate("([email, name]) => run(email, name)", [EMAIL, other])
            assert "Failed to fetch" in done.get("refused", ""), done
            _wait("Chromium to say why", lambda: bool(blocked), 10)
        finally:
            browser.close()
    # the refused page's preflight failed, so its POST was never sent
    found = httpx.get(f"{served.url}/v1/contacts", params={"q": other}, headers=served.headers())
    assert found.status_code == 200
    assert [c for c in found.json()["data"] if c["first_name"] == other] == []


def test_a_worker_serves_its_dispatchers_metrics_on_a_port_of_its_own(served: Served) -> None:
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CRM_", "PROMETHEUS_")) or k == "CRM_SECRET_KEY"
    }
    env.update(CRM_DATABASE_URL=served.database, CRM_SLA_CHECK_SECONDS="1", CRM_DISPATCHER_POLL_SECONDS="0.2")
    cmd = [sys.executable, "-m", "crm_api", "worker", "--processes", "2", "--metrics-port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def scraped() -> dict[str, Any] | None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            except httpx.TransportError:
                return None
            return {f.name: f for f in text_string_to_metric_families(text)}

        def both_dispatching() -> bool:
            families = scraped()
            if families is None:
                return False
            runs = _value(families, "crm_sla_job_runs", "crm_sla_job_runs_total", outcome="ok") or 0
            # each of the two processes adds its pool of 4 once it runs
            return _value(families, "crm_db_pool_size", "crm_db_pool_size") == 8 and runs >= 2

        _wait("the worker's two dispatchers in one scrape", both_dispatching, 120)
        families = scraped()
        assert families is not None
        claims = _value(
            families, "crm_webhook_claim_duration_seconds", "crm_webhook_claim_duration_seconds_count"
        )
        assert claims is not None and claims >= 2
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()


def test_the_log_is_json_a_line_per_request_without_keys_or_personal_data(served: Served) -> None:
    """Last: stops the server and reads all it logged, after requests that carried the key, an email and a
    name in bodies, paths and query strings, and failed ones too."""
    api = httpx.Client(base_url=served.url, headers=served.headers())
    made = api.post(
        "/v1/contacts", json={"first_name": NAME, "email": OTHER_EMAIL}, headers={"X-Request-ID": "trace-me"}
    )
    assert made.status_code == 201
    assert api.get("/v1/contacts", params={"email": OTHER_EMAIL, "q": NAME}).status_code == 200
    assert api.get(f"/v1/contacts/{OTHER_EMAIL}").status_code in (404, 422)
    assert (
        api.post(
            "/v1/contacts", json={"first_name": NAME, "email": OTHER_EMAIL, "lifecycle_stage": 7}
        ).status_code
        == 422
    )
    wrong = f"crm_{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex}"
    assert (
        httpx.get(f"{served.url}/v1/contacts", headers={"Authorization": f"Bearer {wrong}"}).status_code
        == 401
    )
    api.close()
    served.stop()

    text = served.log.read_text()
    for secret in [
        *served.keys_seen,
        served.key.rsplit("_", 1)[1],
        wrong,
        EMAIL,
        OTHER_EMAIL,
        EMAIL.split("@")[0],
        NAME,
    ]:
        assert secret not in text, f"{secret!r} is in the log"

    records = []
    for line in text.splitlines():
        if line.startswith("crm-api: "):  # the command's own progress, not a log record
            continue
        records.append(json.loads(line))  # every other line is one JSON object
    requests = [r for r in records if r["logger"] == "crm_api.access"]
    mine = [r for r in requests if r.get("request_id") == "trace-me"]
    assert len(mine) == 1
    assert mine[0]["level"] == "info" and mine[0]["time"].endswith("Z")
    assert (mine[0]["method"], mine[0]["route"], mine[0]["status"]) == ("POST", "/v1/contacts", 201)
    assert mine[0]["workspace_id"] and mine[0]["key_id"] and mine[0]["duration_ms"] > 0
    assert {r["route"] for r in requests} >= {"/v1/contacts/{id}", "/metrics", "/readyz", "/v1/webhooks"}
    # the app's other loggers, which had no handler before: the first cleanup of expired Idempotency-Keys
    assert any(r["logger"] == "crm_api.maintenance" and "idempotency" in r["message"] for r in records)
    assert any(r["logger"].startswith("uvicorn") for r in records)  # uvicorn's, in the same format
