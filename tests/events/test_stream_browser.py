"""A browser's ``EventSource`` on ``GET /v1/events/stream`` (headless Chromium, Debian's, driven by
Playwright): it receives a change made through the API, and when the server restarts under it, it
reconnects by itself with ``Last-Event-ID`` and gets the changes made meanwhile, none lost, none twice.

``EventSource`` sends no headers of its own; until browser tokens exist the page's requests get the key
added by the test (Playwright's routing), which the browser then sends as any header.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_server import new_key, serve
from playwright.sync_api import Browser, Page, Route, sync_playwright

WAIT_MS = 20_000
FAST = {"CRM_STREAM_HEARTBEAT_S": "1"}
OPEN = """() => {
    window.got = [];
    window.opens = 0;
    const source = new EventSource("/v1/events/stream?type=contact.*");
    for (const type of ["contact.created", "contact.updated"]) {
        source.addEventListener(type, (e) => window.got.push({id: Number(e.lastEventId), type: e.type,
                                                            data: JSON.parse(e.data)}));
    }
    source.onopen = () => { window.opens += 1; };
    window.source = source;
}"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "Chromium is not installed (apt-get install -y chromium; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    with sync_playwright() as playwright:
        # root in a container: Chromium's sandbox needs user namespaces it may not have
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_key(page: Page, key: str) -> None:
    def add(route: Route) -> None:
        route.continue_(headers={**route.request.headers, "authorization": f"Bearer {key}"})

    page.route("**/v1/**", add)


def _got(page: Page, count: int) -> list[dict[str, Any]]:
    page.wait_for_function(f"window.got.length >= {count}", timeout=WAIT_MS)
    got: list[dict[str, Any]] = page.evaluate("window.got")
    return got


@pytest.fixture(scope="module")
def key(database_url: str) -> str:
    return new_key(database_url)  # before the browser: Playwright runs an event loop in this thread


def test_an_event_source_receives_changes_and_resumes_across_a_restart(
    database_url: str, key: str, browser: Browser
) -> None:
    port = _free_port()
    page = browser.new_page()
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        with serve(database_url, port=port, key=key, settings=FAST) as first:
            api.headers["Authorization"] = f"Bearer {key}"
            _with_key(page, key)
            page.goto(f"{first.url}/health")
            page.evaluate(OPEN)
            page.wait_for_function("window.opens >= 1", timeout=WAIT_MS)
            contact = api.post("/v1/contacts", json={"email": "browser@example.com"}).json()
            (created,) = _got(page, 1)
            assert created["type"] == "contact.created" and created["data"]["object_id"] == contact["id"]
        # the server is gone; the browser keeps trying to reconnect
        with serve(database_url, port=port, key=key, settings=FAST):
            for name in ("A", "B"):
                r = api.patch(f"/v1/contacts/{contact['id']}", json={"first_name": name})
                assert r.status_code == 200, r.text
            got = _got(page, 3)
            assert page.evaluate("window.opens") >= 2  # it reconnected, sending the last id it had
    finally:
        page.close()
        api.close()
    assert [g["type"] for g in got] == ["contact.created", "contact.updated", "contact.updated"]
    assert [g["data"]["data"]["object"]["first_name"] for g in got[1:]] == ["A", "B"]
    ids = [g["id"] for g in got]
    assert ids == sorted(set(ids))  # in order, none twice
