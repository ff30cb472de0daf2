"""The dispatcher against a misbehaving receiver: retries, Retry-After, 410, redirects, an exhausted ladder,
a hanging endpoint beside a healthy one, and per-object ordering."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import time
import uuid
from typing import Any

import httpx
import pytest
import standardwebhooks
from receiver import Receiver, Reply, Request, StartDispatcher, wait_for

from crm_api.models.webhooks import DISABLED_FAILING
from crm_api.webhooks.dispatcher import LADDER, next_attempt, retry_after_seconds


async def _endpoint(api: httpx.AsyncClient, url: str, types: list[str], **extra: object) -> dict[str, Any]:
    r = await api.post("/v1/webhooks", json={"url": url, "event_types": types, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _contact(api: httpx.AsyncClient) -> dict[str, Any]:
    r = await api.post("/v1/contacts", json={"email": f"{uuid.uuid4().hex[:10]}@example.com"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _only_delivery(api: httpx.AsyncClient, endpoint_id: str) -> dict[str, Any]:
    listed = (await api.get(f"/v1/webhooks/{endpoint_id}/deliveries")).json()["data"]
    assert len(listed) == 1
    body: dict[str, Any] = (await api.get(f"/v1/webhook-deliveries/{listed[0]['id']}")).json()
    return body


# -- unit: the retry schedule -------------------------------------------------------------------------------


def test_next_attempt_follows_the_ladder_with_jitter() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for attempts, step in enumerate(LADDER, start=1):
        when = next_attempt(attempts, None, now)
        assert when is not None
        assert step * 0.8 - 0.001 <= (when - now).total_seconds() <= step * 1.2 + 0.001
    assert next_attempt(len(LADDER) + 1, None, now) is None
    assert next_attempt(len(LADDER) + 1, 10.0, now) is None
    assert sum(LADDER) / 86400 == pytest.approx(3.15, abs=0.1)  # "about 3 days"
    scaled = next_attempt(2, None, now, scale=0.001)
    assert scaled is not None and (scaled - now).total_seconds() <= 300 * 0.001 * 1.2 + 0.001


def test_next_attempt_honours_retry_after() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    when = next_attempt(1, 120.0, now, scale=0.001)
    assert when is not None and (when - now).total_seconds() >= 120
    # a shorter Retry-After never shortens the ladder's own wait
    when = next_attempt(3, 1.0, now)
    assert when is not None and (when - now).total_seconds() >= 1800 * 0.8
    # an absurd Retry-After is capped at the ladder's longest step
    when = next_attempt(1, 10**9, now)
    assert when is not None and (when - now).total_seconds() <= LADDER[-1]


def test_retry_after_seconds() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 7 ") == 7.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-5") is None
    later = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=100), usegmt=True)
    assert retry_after_seconds(later) == pytest.approx(100, abs=3)
    past = email.utils.format_datetime(dt.datetime(2000, 1, 1, tzinfo=dt.UTC), usegmt=True)
    assert retry_after_seconds(past) == 0.0


# -- against a real receiver --------------------------------------------------------------------------------


async def test_server_errors_are_retried_until_success(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    receiver.on("/hook", lambda _r, i: Reply(500, body=b"boom") if i < 2 else Reply(200))
    ep = await _endpoint(api, receiver.url(), ["contact.*"])
    await start_dispatcher()
    await _contact(api)
    await wait_for(lambda: receiver.accepted())

    async def succeeded() -> dict[str, Any] | None:
        d = await _only_delivery(api, ep["id"])
        return d if d["status"] == "succeeded" else None

    d = await wait_for(succeeded)
    assert d["attempts"] == 3
    assert [a["status_code"] for a in d["attempt_log"]] == [500, 500, 200]
    assert [a["error"] for a in d["attempt_log"]] == ["http 500", "http 500", None]
    assert d["attempt_log"][0]["response_body"] == "boom"
    # every try carries the same webhook-id and a valid signature
    got = receiver.at()
    assert len({r.headers["webhook-id"] for r in got}) == 1
    for r in got:
        standardwebhooks.Webhook(ep["secret"]).verify(r.body, r.headers)
    endpoint = (await api.get(f"/v1/webhooks/{ep['id']}")).json()
    assert endpoint["status"] == "enabled"


async def test_retry_after_is_honoured(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    receiver.on("/hook", lambda _r, _i: Reply(503, {"Retry-After": "120"}))
    ep = await _endpoint(api, receiver.url(), ["contact.*"])
    await start_dispatcher()
    await _contact(api)

    async def attempted() -> dict[str, Any] | None:
        d = await _only_delivery(api, ep["id"])
        return d if d["attempt_log"] else None

    d = await wait_for(attempted)
    assert (d["status"], d["last_status_code"]) == ("pending", 503), d
    tried = dt.datetime.fromisoformat(d["attempt_log"][0]["attempted_at"])
    # the ladder's first step would be 5 ms at this scale; the receiver asked for two minutes
    assert dt.datetime.fromisoformat(d["next_attempt_at"]) >= tried + dt.timedelta(seconds=119)
    assert len(receiver.at()) == 1


async def test_a_freed_slot_wakes_the_dispatcher_without_waiting_for_the_poll(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    # One request in flight per endpoint and a poll far longer than the test: each next delivery can
    # only go out because the previous one's finish woke the claim loop. A wake-up lost between the
    # claim and the wait would stall the queue for the whole poll interval.
    ep = await _endpoint(api, receiver.url(), ["contact.*"])
    for _ in range(20):
        await _contact(api)
    await start_dispatcher(dispatcher_per_endpoint=1, dispatcher_poll_seconds=3600)
    await wait_for(lambda: len(receiver.accepted()) >= 20, within=15)
    listed = (await api.get(f"/v1/webhooks/{ep['id']}/deliveries", params={"limit": 50})).json()["data"]
    assert len(listed) == 20


async def test_gone_disables_the_endpoint_at_once(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    receiver.on("/hook", lambda _r, _i: Reply(410))
    ep = await _endpoint(api, receiver.url(), ["contact.*"])
    await start_dispatcher()
    await _contact(api)

    async def disabled() -> dict[str, Any] | None:
        e = (await api.get(f"/v1/webhooks/{ep['id']}")).json()
        return e if e["status"] == "disabled" else None

    e = await wait_for(disabled)
    assert "410" in e["disabled_reason"]
    d = await _only_delivery(api, ep["id"])
    assert d["status"] == "failed" and d["attempts"] == 1 and d["last_status_code"] == 410
    # a disabled endpoint is not subscribed any more: later events do not fan out to it
    await _contact(api)
    await asyncio.sleep(0.5)
    assert len((await api.get(f"/v1/webhooks/{ep['id']}/deliveries")).json()["data"]) == 1
    assert len(receiver.at()) == 1
    # re-enabled, it gets what happens next (the failed delivery stays failed until recovered)
    receiver.on("/hook", lambda _r, _i: Reply(200))
    assert (await api.patch(f"/v1/webhooks/{ep['id']}", json={"status": "enabled"})).status_code == 200
    await _contact(api)
    await wait_for(lambda: receiver.accepted())
    assert len(receiver.at()) == 2


async def test_redirects_are_not_followed(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    receiver.on("/hook", lambda _r, _i: Reply(302, {"Location": receiver.url("/target")}))
    ep = await _endpoint(api, receiver.url(), ["contact.*"])
    await start_dispatcher()
    await _contact(api)

    async def attempted() -> dict[str, Any] | None:
        d = await _only_delivery(api, ep["id"])
        return d if len(d["attempt_log"]) >= 2 else None

    d = await wait_for(attempted)
    assert d["status"] == "pending" and d["delivered_at"] is None
    assert {a["status_code"] for a in d["attempt_log"]} == {302}
    assert {a["error"] for a in d["attempt_log"]} == {"http 302"}
    assert receiver.at("/target") == []


async def test_exhausted_ladder_marks_the_delivery_failed(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    receiver.on("/hook", lambda _r, _i: Reply(500))
    ep = await _endpoint(api, receiver.url(), ["contact.*"])
    await start_dispatcher(scale=0.00001)  # the whole ~3 day ladder in about 3 s
    await _contact(api)

    async def failed() -> dict[str, Any] | None:
        d = await _only_delivery(api, ep["id"])
        return d if d["status"] == "failed" else None

    d = await wait_for(failed, within=40)
    assert d["attempts"] == len(LADDER) + 1 == len(d["attempt_log"]) == len(receiver.at())
    assert d["next_attempt_at"] is None and d["last_status_code"] == 500
    # a failing endpoint stays enabled until it has failed for 5 days
    assert (await api.get(f"/v1/webhooks/{ep['id']}")).json()["status"] == "enabled"


async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    receiver.on("/slow", lambda _r, _i: Reply(200, delay=30))
    await _endpoint(api, receiver.url("/slow"), ["contact.*"])
    await _endpoint(api, receiver.url("/fast"), ["contact.*"])
    dispatcher = await start_dispatcher()
    started = time.monotonic()
    for _ in range(20):
        await _contact(api)
    await wait_for(lambda: len(receiver.accepted("/fast")) == 20, within=14)
    elapsed = time.monotonic() - started
    slow = receiver.at("/slow")
    # the slow endpoint's requests are all still hanging, and no more than the cap were opened
    assert all(r.status is None for r in slow), "the slow endpoint answered: the test proves nothing"
    assert 1 <= len(slow) <= dispatcher.settings.dispatcher_per_endpoint
    assert elapsed < 14
    assert len({r.json()["id"] for r in receiver.accepted("/fast")}) == 20


async def test_per_object_ordering_survives_failures(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    def flaky(_r: Request, i: int) -> Reply:
        return Reply(500) if i < 12 and i % 2 == 0 else Reply(200)

    receiver.on("/hook", flaky)
    await _endpoint(api, receiver.url(), ["contact.*"], ordering="per_object")
    await start_dispatcher()
    contact = await _contact(api)
    for n in range(10):
        r = await api.patch(f"/v1/contacts/{contact['id']}", json={"first_name": f"v{n}"})
        assert r.status_code == 200, r.text

    await wait_for(lambda: len(receiver.accepted()) == 11, within=30)
    accepted = [r.json() for r in receiver.accepted()]
    sequences = [p["sequence"] for p in accepted]
    assert sequences == sorted(sequences) and len(set(sequences)) == 11
    assert [p["type"] for p in accepted] == ["contact.created"] + ["contact.updated"] * 10
    assert [p["data"]["object"]["first_name"] for p in accepted[1:]] == [f"v{n}" for n in range(10)]
    # failures did happen in between, each followed by the same event again
    assert any(r.status == 500 for r in receiver.at())


async def test_five_days_of_failure_disable_and_park_then_reenabling_delivers_the_backlog(
    api: httpx.AsyncClient, pool: Any, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    down = True
    receiver.on("/hook", lambda _r, _i: Reply(503) if down else Reply(200))
    ep = await _endpoint(api, receiver.url(), ["contact.*"])
    ws = api.workspace_id  # type: ignore[attr-defined]
    # it has been failing for six days already: the next failure disables it
    await pool.execute(
        "UPDATE webhook_endpoints SET failing_since = now() - interval '6 days' "
        "WHERE workspace_id = $1 AND id = $2",
        ws,
        ep["id"],
    )
    await start_dispatcher()
    first = await _contact(api)

    async def disabled() -> dict[str, Any] | None:
        e = (await api.get(f"/v1/webhooks/{ep['id']}")).json()
        return e if e["status"] == "disabled" else None

    assert (await wait_for(disabled))["disabled_reason"] == DISABLED_FAILING
    second = await _contact(api)  # still collected while disabled, parked rather than due
    parked = await pool.fetch(
        "SELECT next_attempt_at = 'infinity' AS parked FROM webhook_deliveries "
        "WHERE workspace_id = $1 AND endpoint_id = $2 AND status = 'pending'",
        ws,
        ep["id"],
    )
    assert len(parked) == 2 and all(r["parked"] for r in parked)
    tried = len(receiver.at())
    await asyncio.sleep(0.5)
    assert len(receiver.at()) == tried, "a disabled endpoint was sent to"

    down = False
    r = await api.patch(f"/v1/webhooks/{ep['id']}", json={"status": "enabled"})
    assert r.status_code == 200, r.text
    await wait_for(lambda: len(receiver.accepted()) == 2, within=15)
    got = {req.json()["data"]["object"]["id"] for req in receiver.accepted()}
    assert got == {first["id"], second["id"]}
