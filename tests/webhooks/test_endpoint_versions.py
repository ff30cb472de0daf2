"""An endpoint's version moves when the dispatcher changes what the API shows of it (a disable on a 410 or
after 5 days of failures), so an ETag held from before fails If-Match and gets no 304; the failure clock the
API does not show (failing_since) moves without a new version."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import standardwebhooks
from receiver import Receiver, Reply, StartDispatcher, wait_for

from crm_api.models.webhooks import DISABLED_FAILING, DISABLED_GONE, DISABLED_REQUESTED


async def _endpoint(api: httpx.AsyncClient, url: str) -> dict[str, Any]:
    r = await api.post("/v1/webhooks", json={"url": url, "event_types": ["contact.*"]})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _contact(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/contacts", json={"email": f"{uuid.uuid4().hex[:10]}@example.com"})
    assert r.status_code == 201, r.text


async def _changed_since(api: httpx.AsyncClient, path: str, etag: str) -> httpx.Response | None:
    """The GET's answer once If-None-Match with ``etag`` no longer answers 304."""
    r = await api.get(path, headers={"If-None-Match": etag})
    if r.status_code == 304:
        assert r.headers["etag"] == etag and r.content == b""
        return None
    return r


async def test_a_disable_on_410_is_a_new_version_that_stale_if_match_and_if_none_match_see(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    receiver.on("/hook", lambda _r, _i: Reply(410))
    ep = await _endpoint(api, receiver.url())
    path = f"/v1/webhooks/{ep['id']}"
    before = await api.get(path)
    held = before.headers["etag"]
    assert held == f'"{ep["version"]}"' and before.json()["status"] == "enabled"
    r = await api.get(path, headers={"If-None-Match": held})
    assert (r.status_code, r.headers["etag"], r.content) == (304, held, b"")

    await start_dispatcher()
    await _contact(api)
    r = await wait_for(lambda: _changed_since(api, path, held))

    # the old ETag gets the new state, not a 304
    assert r.status_code == 200, r.text
    now = r.json()
    assert (now["status"], now["disabled_reason"]) == ("disabled", DISABLED_GONE)
    assert now["version"] == ep["version"] + 1 and r.headers["etag"] == f'"{now["version"]}"'
    assert now["updated_at"] > before.json()["updated_at"]
    assert len(receiver.at()) == 1

    # a write made against the version before the disable is refused and changes nothing
    stale = {"If-Match": held}
    r = await api.patch(path, json={"url": receiver.url("/elsewhere")}, headers=stale)
    assert r.status_code == 412, r.text
    assert r.json()["code"] == "precondition_failed"
    r = await api.patch(path, json={"status": "enabled"}, headers=stale)
    assert r.status_code == 412, r.text
    assert (await api.delete(path, headers=stale)).status_code == 412
    assert (await api.get(path)).json() == now

    # against the current version it applies, and answers the next version's ETag
    r = await api.patch(path, json={"status": "enabled"}, headers={"If-Match": f'"{now["version"]}"'})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "enabled" and r.json()["disabled_reason"] is None
    assert r.headers["etag"] == f'"{now["version"] + 1}"' == f'"{r.json()["version"]}"'
    current = r.headers["etag"]
    r = await api.get(path, headers={"If-None-Match": current})
    assert (r.status_code, r.headers["etag"]) == (304, current)


async def test_failures_move_no_version_until_five_days_of_them_disable_the_endpoint(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    down = True
    receiver.on("/hook", lambda _r, _i: Reply(503) if down else Reply(200))
    ep = await _endpoint(api, receiver.url())
    path = f"/v1/webhooks/{ep['id']}"
    ws = api.workspace_id  # type: ignore[attr-defined]
    held = (await api.get(path)).headers["etag"]

    async def failing_since() -> Any:
        return await pool.fetchval(
            "SELECT failing_since FROM webhook_endpoints WHERE workspace_id = $1 AND id = $2", ws, ep["id"]
        )

    # the first failure starts the (unshown) failure clock: the endpoint as the API shows it is the same
    await start_dispatcher()
    await _contact(api)
    await wait_for(failing_since)
    r = await api.get(path, headers={"If-None-Match": held})
    assert r.status_code == 304, r.text
    # a success stops the clock: still the same version
    down = False
    await wait_for(lambda: receiver.accepted())
    assert await wait_for(lambda: _none(failing_since)) is True
    r = await api.get(path, headers={"If-None-Match": held})
    assert r.status_code == 304, r.text
    assert (await api.patch(path, json={"description": "x"}, headers={"If-Match": held})).status_code == 200
    held = (await api.get(path)).headers["etag"]

    # failing for six days already: the next failure disables it, and that is a new version
    down = True
    await pool.execute(
        "UPDATE webhook_endpoints SET failing_since = now() - interval '6 days' "
        "WHERE workspace_id = $1 AND id = $2",
        ws,
        ep["id"],
    )
    await _contact(api)
    r = await wait_for(lambda: _changed_since(api, path, held))
    assert (r.json()["status"], r.json()["disabled_reason"]) == ("disabled", DISABLED_FAILING)
    assert r.headers["etag"] == f'"{int(held.strip(chr(34))) + 1}"'
    r = await api.patch(path, json={"status": "enabled"}, headers={"If-Match": held})
    assert r.status_code == 412, r.text


async def _none(read: Any) -> bool:
    return await read() is None


async def test_rotate_secret_is_a_new_version_and_honours_if_match(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    ep = await _endpoint(api, receiver.url())
    path = f"/v1/webhooks/{ep['id']}"
    held = (await api.get(path)).headers["etag"]
    assert (await api.patch(path, json={"description": "moved on"})).status_code == 200

    # against a version that is gone: 412, and the secret stays the one made on create
    r = await api.post(f"{path}/rotate-secret", headers={"If-Match": held})
    assert r.status_code == 412, r.text
    assert r.json()["code"] == "precondition_failed" and "secret" not in r.text
    await start_dispatcher()
    await _contact(api)
    first = (await wait_for(lambda: receiver.accepted()))[0]
    assert len(first.headers["webhook-signature"].split(" ")) == 1
    standardwebhooks.Webhook(str(ep["secret"])).verify(first.body, first.headers)

    # against the current version it rotates, answers the next version's ETag, and that version is served
    current = (await api.get(path)).headers["etag"]
    r = await api.post(f"{path}/rotate-secret", headers={"If-Match": current})
    assert r.status_code == 200, r.text
    version = int(current.strip('"')) + 1
    assert r.json()["version"] == version and r.headers["etag"] == f'"{version}"'
    assert (await api.get(path, headers={"If-None-Match": r.headers["etag"]})).status_code == 304
    # the ETag held before the rotation no longer passes
    again = await api.post(f"{path}/rotate-secret", headers={"If-Match": current})
    assert again.status_code == 412, again.text
    await _contact(api)
    second = (await wait_for(lambda: receiver.accepted()[1:]))[0]
    standardwebhooks.Webhook(r.json()["secret"]).verify(second.body, second.headers)
    assert len(second.headers["webhook-signature"].split(" ")) == 2


async def test_a_patch_repeating_the_endpoints_state_moves_no_version(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    ep = await _endpoint(api, receiver.url())
    path = f"/v1/webhooks/{ep['id']}"
    same = {"url": ep["url"], "event_types": ["contact.*"], "status": "enabled", "description": None}
    r = await api.patch(path, json=same, headers={"If-Match": f'"{ep["version"]}"'})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == ep["version"] and r.headers["etag"] == f'"{ep["version"]}"'
    assert r.json()["updated_at"] == ep["updated_at"]
    # one field changed among repeated ones: one new version
    r = await api.patch(path, json={**same, "description": "orders"})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == ep["version"] + 1 and r.json()["description"] == "orders"


async def test_a_disable_asked_of_an_endpoint_disabled_for_failing_stops_its_deliveries(
    api: httpx.AsyncClient, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    """Disabled for failing, an endpoint still receives (parked); asked to disable, it receives nothing:
    the same status, a new reason and version, and events from then on queue nothing for it."""
    ep = await _endpoint(api, receiver.url())
    path = f"/v1/webhooks/{ep['id']}"
    ws = api.workspace_id  # type: ignore[attr-defined]
    await pool.execute(
        "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $3, version = version + 1 "
        "WHERE workspace_id = $1 AND id = $2",
        ws,
        uuid.UUID(ep["id"]),
        DISABLED_FAILING,
    )

    async def queued() -> int:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE workspace_id = $1 AND endpoint_id = $2",
            ws,
            uuid.UUID(ep["id"]),
        )
        return count

    await _contact(api)
    assert await queued() == 1  # disabled for failing: still queued, parked
    r = await api.patch(path, json={"status": "disabled"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["disabled_reason"]) == ("disabled", DISABLED_REQUESTED)
    assert r.json()["version"] == ep["version"] + 2
    await _contact(api)
    assert await queued() == 1  # on request: nothing more
    # asked again, it is the same: no new version
    again = await api.patch(path, json={"status": "disabled"})
    assert again.status_code == 200 and again.json()["version"] == r.json()["version"]
