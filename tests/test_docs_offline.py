"""``/docs`` and ``/redoc`` work on a machine without internet: headless Chromium loads them from a real
``crm-api serve``, with every request to another host refused, and finds the operations rendered.

Chromium is Debian's (``apt-get install -y chromium``: ``.ci/run`` installs it), driven by Playwright.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from live_server import Server, serve
from playwright.sync_api import Browser, Page, Route, sync_playwright

SPEC = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
DOCUMENT = json.loads(SPEC.read_text())
OPERATIONS = [op for path in DOCUMENT["paths"].values() for op in path.values()]
WEBHOOKS = list(DOCUMENT["webhooks"].values())


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "Chromium is not installed (apt-get install -y chromium; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[Server]:
    with serve(database_url) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    with sync_playwright() as playwright:
        # root in a container: Chromium's sandbox needs user namespaces it may not have
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


class Offline:
    """A page whose requests may reach only the server under test; the others are refused and noted."""

    def __init__(self, browser: Browser, server: Server) -> None:
        self.page: Page = browser.new_page()
        self.host = urlsplit(server.url).netloc
        self.refused: list[str] = []
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.route("**/*", self._only_ours)

    def _only_ours(self, route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.netloc == self.host:
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort()


def test_the_assets_are_served_from_the_package(server: Server) -> None:
    docs = httpx.get(f"{server.url}/docs")
    page = docs.text
    assert "cdn" not in page and "https://" not in page, page
    # and the browser is told to reach no other host (ReDoc's logo would come from one)
    assert "default-src 'none'" in docs.headers["content-security-policy"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        r = httpx.get(f"{server.url}/docs/assets/{asset}")
        assert r.status_code == 200, asset
        assert len(r.content) > 50_000, asset
    assert "https://" not in httpx.get(f"{server.url}/redoc").text


def test_swagger_ui_renders_every_operation_offline(browser: Browser, server: Server, tmp_path: Path) -> None:
    offline = Offline(browser, server)
    page = offline.page
    page.goto(f"{server.url}/docs", wait_until="domcontentloaded")
    page.wait_for_selector("#operations-contacts-contacts_create", timeout=60_000)
    # every operation is a block of its tag's section, named by its operationId
    rendered = set(page.eval_on_selector_all(".opblock", "blocks => blocks.map(b => b.id)"))
    assert {f"operations-{op['tags'][0]}-{op['operationId']}" for op in OPERATIONS} <= rendered
    # and the webhooks section: a block per event type
    assert {f"operations-webhooks-{w['post']['operationId']}" for w in WEBHOOKS} <= rendered
    create = page.locator("#operations-contacts-contacts_create")
    assert "Create a contact" in create.inner_text()
    assert page.locator(".information-container").inner_text().startswith("crm-api")
    assert offline.refused == []
    assert offline.errors == []
    page.screenshot(path=tmp_path / "docs.png")  # to look at when it fails
    page.close()


def test_redoc_renders_the_operations_offline(browser: Browser, server: Server, tmp_path: Path) -> None:
    offline = Offline(browser, server)
    page = offline.page
    page.goto(f"{server.url}/redoc", wait_until="domcontentloaded")
    page.wait_for_selector('[data-section-id="operation/contacts_create"]', state="attached", timeout=90_000)
    sections = page.eval_on_selector_all(
        '[data-section-id^="operation/"]', "nodes => nodes.map(n => n.getAttribute('data-section-id'))"
    )
    assert {f"operation/{op['operationId']}" for op in OPERATIONS} <= set(sections)
    assert "Create a contact" in page.locator('[data-section-id="operation/contacts_create"]').inner_text()
    assert offline.refused == []
    # the one thing the page asks of another host, its logo, is refused by the policy, not fetched
    assert [e for e in offline.errors if "logo-mini.svg" not in e] == []
    page.screenshot(path=tmp_path / "redoc.png")
    page.close()
