"""Browser tokens in a browser (headless Chromium, driven by Playwright) against ``crm-api serve``: a page on
an allowed origin reads, writes and follows the event stream with its token (``access_token``, as
``EventSource`` sends no headers); an expired token, a token used from another origin and a write outside
its scopes are refused. The pages' origins are served by Playwright itself; the API is another origin, so
every call is a real cross-origin request under CORS."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_server import Server, new_key, serve
from playwright.sync_api import Browser, Page, sync_playwright

APP, EVIL = "http://app.test", "http://evil.test"  # served by Playwright itself, never reached
WAIT_MS = 20_000
CALLS = """async ([api, token]) => {
    const headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"};
    const made = await fetch(api + "/v1/contacts", {method: "POST", headers,
                                                     body: JSON.stringify({email: "page@example.com"})});
    const id = made.ok ? (await made.json()).id : null;
    const read = await fetch(api + "/v1/contacts/" + id, {headers});
    const company = JSON.stringify({name: "X"});
    const outside = await fetch(api + "/v1/companies", {method: "POST", headers, body: company});
    return [made.status, read.status, outside.status, id];
}"""
READ = """async ([api, token]) => (await fetch(api + "/v1/contacts",
                                         {headers: {"Authorization": "Bearer " + token}})).status"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "Chromium is not installed (apt-get install -y chromium; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def key(database_url: str) -> str:
    return new_key(database_url)  # before the browser: Playwright runs an event loop in this thread


@pytest.fixture(scope="module")
def server(database_url: str, key: str) -> Iterator[Server]:
    settings = {"CRM_CORS_ORIGINS": f"{APP},{EVIL}", "CRM_STREAM_HEARTBEAT_S": "1"}
    with serve(database_url, key=key, settings=settings) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    with sync_playwright() as playwright:
        # root in a container: Chromium's sandbox needs user namespaces it may not have; and the API under
        # test listens on loopback, which Chrome's Local Network Access keeps from pages of other hosts
        # (a deployed API is on a public address, where the check does not apply)
        args = ["--no-sandbox", "--disable-features=LocalNetworkAccessChecks"]
        launched = playwright.chromium.launch(executable_path=executable, args=args)
        yield launched
        launched.close()


def _page_at(browser: Browser, origin: str) -> Page:
    page = browser.new_page()
    page.route(f"{origin}/**", lambda route: route.fulfill(body="<!doctype html><title>app</title>",
                                                          content_type="text/html"))  # fmt: skip
    page.goto(f"{origin}/")
    return page


def _mint(server: Server, **body: Any) -> str:
    wanted = {"scopes": ["contacts:read", "contacts:write", "events:read"], "origins": [APP], **body}
    r = httpx.post(
        f"{server.url}/v1/browser-tokens", json=wanted, headers={"Authorization": f"Bearer {server.key}"}
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


def test_a_page_on_its_origin_reads_writes_and_streams_with_a_token(server: Server, browser: Browser) -> None:
    token = _mint(server)
    page = _page_at(browser, APP)
    try:
        made, read, outside, contact_id = page.evaluate(CALLS, [server.url, token])
        assert (made, read, outside) == (201, 200, 403)
        page.evaluate(
            """([api, token]) => {
                window.got = [];
                const url = api + "/v1/events/stream?type=contact.*&access_token=" + token;
                const source = new EventSource(url);
                source.addEventListener("contact.updated", (e) => window.got.push(JSON.parse(e.data)));
                source.onopen = () => { window.opened = true; };
            }""",
            [server.url, token],
        )
        page.wait_for_function("window.opened === true", timeout=WAIT_MS)
        r = httpx.patch(
            f"{server.url}/v1/contacts/{contact_id}",
            json={"first_name": "Streamed"},
            headers={"Authorization": f"Bearer {server.key}"},
        )
        assert r.status_code == 200
        page.wait_for_function("window.got.length >= 1", timeout=WAIT_MS)
        (event,) = page.evaluate("window.got")
        assert event["object_id"] == contact_id and event["data"]["object"]["first_name"] == "Streamed"
    finally:
        page.close()


def test_an_expired_token_and_a_token_from_another_origin_are_refused(
    server: Server, browser: Browser
) -> None:
    page, evil = _page_at(browser, APP), _page_at(browser, EVIL)
    lasting, short = _mint(server), _mint(server, ttl_seconds=3)
    try:
        assert page.evaluate(READ, [server.url, short]) == 200
        time.sleep(3.2)  # past its expiry
        assert page.evaluate(READ, [server.url, short]) == 401
        assert page.evaluate(READ, [server.url, lasting]) == 200
        assert evil.evaluate(READ, [server.url, lasting]) == 401  # the same token, from another origin
    finally:
        page.close()
        evil.close()
