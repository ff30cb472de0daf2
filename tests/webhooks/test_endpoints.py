"""Webhook endpoints through the API, and deliveries end to end to a real receiver, verified the way an
integrator would verify them (``standardwebhooks`` and ``svix``)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import uuid

import asyncpg
import httpx
import standardwebhooks
import svix.webhooks
from receiver import Receiver, Reply, StartDispatcher, wait_for


async def _endpoint(api: httpx.AsyncClient, url: str, types: list[str], **extra: object) -> dict[str, object]:
    r = await api.post("/v1/webhooks", json={"url": url, "event_types": types, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


async def _contact(api: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    r = await api.post("/v1/contacts", json={"email": f"{uuid.uuid4().hex[:10]}@example.com", **fields})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


async def test_end_to_end_contact_created_is_signed_and_filtered(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    contacts_ep = await _endpoint(api, receiver.url("/contacts"), ["contact.*"])
    all_ep = await _endpoint(api, receiver.url("/all"), ["*"])
    await start_dispatcher()

    company = await api.post("/v1/companies", json={"name": "Acme"})
    assert company.status_code == 201, company.text
    contact = await _contact(api, first_name="Ann")

    await wait_for(lambda: len(receiver.accepted("/all")) >= 2 and receiver.accepted("/contacts"))
    got = receiver.at("/contacts")
    assert len(got) == 1
    request = got[0]
    secret = str(contacts_ep["secret"])
    # both reference implementations accept the signature over the exact bytes received
    payload = standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    svix.webhooks.Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "contact.created"
    assert payload["id"] == request.headers["webhook-id"]
    assert payload["workspace_id"] == str(api.workspace_id)  # type: ignore[attr-defined]
    assert payload["data"]["object"] == contact
    assert isinstance(payload["sequence"], int)
    assert request.headers["content-type"] == "application/json"

    event = (await api.get(f"/v1/events/{payload['id']}")).json()
    assert event["sequence"] == payload["sequence"]
    assert event["type"] == "contact.created" and event["object_id"] == contact["id"]

    # "*" got the company too, with its own secret; contact.* never had a delivery for it
    types = sorted(r.json()["type"] for r in receiver.at("/all"))
    assert types == ["company.created", "contact.created"]
    for r in receiver.at("/all"):
        standardwebhooks.Webhook(str(all_ep["secret"])).verify(r.body, r.headers)
    listed = (await api.get(f"/v1/webhooks/{contacts_ep['id']}/deliveries")).json()["data"]
    assert [d["event_type"] for d in listed] == ["contact.created"]
    # a wrong secret does not verify
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    try:
        standardwebhooks.Webhook(other).verify(request.body, request.headers)
    except standardwebhooks.WebhookVerificationError:
        pass
    else:
        raise AssertionError("verified with the wrong secret")


async def test_endpoint_crud_and_secret(api: httpx.AsyncClient, make_client: object) -> None:
    ep = await _endpoint(
        api, "http://127.0.0.1:9/hook", ["contact.*", "deal.won"], description="zap", ordering="per_object"
    )
    secret = str(ep["secret"])
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert ep["status"] == "enabled" and ep["ordering"] == "per_object"
    assert ep["event_types"] == ["contact.*", "deal.won"]

    got = (await api.get(f"/v1/webhooks/{ep['id']}")).json()
    assert "secret" not in got and got["id"] == ep["id"] and got["description"] == "zap"
    listed = (await api.get("/v1/webhooks")).json()
    assert [e["id"] for e in listed["data"]] == [ep["id"]]
    assert all("secret" not in e for e in listed["data"])

    patched = await api.patch(
        f"/v1/webhooks/{ep['id']}", json={"event_types": ["*"], "description": None, "status": "disabled"}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["event_types"] == ["*"] and body["description"] is None and body["status"] == "disabled"
    assert body["version"] > got["version"]
    enabled = (await api.patch(f"/v1/webhooks/{ep['id']}", json={"status": "enabled"})).json()
    assert enabled["status"] == "enabled" and enabled["disabled_reason"] is None

    # another workspace sees none of it
    stranger = await make_client()  # type: ignore[operator]
    assert (await stranger.get(f"/v1/webhooks/{ep['id']}")).status_code == 404
    assert (await stranger.patch(f"/v1/webhooks/{ep['id']}", json={"description": "x"})).status_code == 404
    assert (await stranger.delete(f"/v1/webhooks/{ep['id']}")).status_code == 404
    assert (await stranger.post(f"/v1/webhooks/{ep['id']}/rotate-secret")).status_code == 404
    assert (await stranger.post(f"/v1/webhooks/{ep['id']}/test")).status_code == 404
    assert (await stranger.get(f"/v1/webhooks/{ep['id']}/deliveries")).status_code == 404
    assert (await stranger.get("/v1/webhooks")).json()["data"] == []

    deleted = await api.delete(f"/v1/webhooks/{ep['id']}")
    assert deleted.status_code == 200 and deleted.json()["id"] == ep["id"]
    assert (await api.get(f"/v1/webhooks/{ep['id']}")).status_code == 404
    assert (await api.delete(f"/v1/webhooks/{ep['id']}")).status_code == 404


async def test_private_and_odd_urls_are_refused(api: httpx.AsyncClient) -> None:
    for url in (
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.1.1/",
        "http://[::1]/hook",
        "http://user:pw@127.0.0.1/hook",
        "ftp://127.0.0.1/hook",
    ):
        r = await api.post("/v1/webhooks", json={"url": url, "event_types": ["*"]})
        assert r.status_code == 422, (url, r.text)
    ep = await _endpoint(api, "http://127.0.0.1:9/hook", ["*"])
    r = await api.patch(f"/v1/webhooks/{ep['id']}", json={"url": "http://10.0.0.1/hook"})
    assert r.status_code == 422, r.text
    assert (await api.get(f"/v1/webhooks/{ep['id']}")).json()["url"] == "http://127.0.0.1:9/hook"
    for bad in ({"url": "http://127.0.0.1:9/", "event_types": []}, {"url": "http://127.0.0.1:9/"}):
        assert (await api.post("/v1/webhooks", json=bad)).status_code == 422
    bad_type = {"url": "http://127.0.0.1:9/", "event_types": ["Contact Created"]}
    assert (await api.post("/v1/webhooks", json=bad_type)).status_code == 422


async def test_event_types_must_be_catalogued_or_a_wildcard_of_a_known_prefix(api: httpx.AsyncClient) -> None:
    url = "http://127.0.0.1:9/hook"
    for types, bad, message in (
        (["contact.*", "contcat.created"], 1, "unknown event type 'contcat.created'"),
        (["contcat.*"], 0, "no event type starts with 'contcat.'"),
        (["deal.won", "deal.wonn"], 1, "unknown event type 'deal.wonn'"),
        (["ticket_comment.*"], 0, "no event type starts with 'ticket_comment.'"),
    ):
        r = await api.post("/v1/webhooks", json={"url": url, "event_types": types})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
        errors = r.json()["errors"]
        assert [e["path"] for e in errors] == [f"/event_types/{bad}"]
        assert message in errors[0]["message"]
    assert (await api.get("/v1/webhooks")).json()["data"] == []
    # every catalogued type, each prefix's wildcard and * are taken
    listed = (await api.get("/v1/event-types")).json()["data"]
    exact = [e["type"] for e in listed]
    wildcards = sorted({t.split(".")[0] + ".*" for t in exact})
    assert {"contact.*", "ticket.*", "webhook.*"} <= set(wildcards)
    ep = await _endpoint(api, url, ["*", *wildcards, *exact])
    assert ep["event_types"] == sorted({"*", *wildcards, *exact})
    types = ["ticket.comment_created", "ticket.sla_breached"]
    r = await api.patch(f"/v1/webhooks/{ep['id']}", json={"event_types": types})
    assert r.status_code == 200 and r.json()["event_types"] == types, r.text
    # an update is held to the same list, and a refused one changes nothing
    r = await api.patch(f"/v1/webhooks/{ep['id']}", json={"event_types": ["contcat.created"]})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "/event_types/0", r.text
    got = (await api.get(f"/v1/webhooks/{ep['id']}")).json()
    assert got["event_types"] == ["ticket.comment_created", "ticket.sla_breached"]


async def test_delete_stops_deliveries(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    gone = await _endpoint(api, receiver.url("/gone"), ["*"])
    await _endpoint(api, receiver.url("/kept"), ["*"])
    assert (await api.delete(f"/v1/webhooks/{gone['id']}")).status_code == 200
    await start_dispatcher()
    await _contact(api)
    await wait_for(lambda: receiver.accepted("/kept"))
    await asyncio.sleep(0.5)
    assert receiver.at("/gone") == []


async def test_subscribing_a_url_again_for_overlapping_types_is_allowed_with_a_warning(
    api: httpx.AsyncClient,
) -> None:
    url = "http://127.0.0.1:9/twice"
    first = await _endpoint(api, url, ["contact.*", "deal.won"])
    assert first["warnings"] == []
    # the same URL for other types only, and another URL for the same types: nothing to say
    other_types = await _endpoint(api, url, ["ticket.created"])
    assert other_types["warnings"] == []
    assert (await _endpoint(api, "http://127.0.0.1:9/other", ["contact.*"]))["warnings"] == []

    second = await _endpoint(api, url, ["contact.created", "deal.*"])
    assert second["id"] != first["id"]
    [warning] = second["warnings"]
    assert warning["code"] == "overlapping_subscription"
    assert warning["endpoint_id"] == first["id"]
    assert warning["event_types"] == ["contact.created", "deal.won"]
    assert first["id"] in warning["message"]

    # a PATCH that makes an overlap says so too; one that changes nothing of the subscription does not
    r = await api.patch(f"/v1/webhooks/{other_types['id']}", json={"event_types": ["*"]})
    assert r.status_code == 200, r.text
    warned = {w["endpoint_id"]: w["event_types"] for w in r.json()["warnings"]}
    assert set(warned) == {first["id"], second["id"]}
    assert "webhook.test" not in warned[first["id"]]  # sent to the endpoint under test only
    r = await api.patch(f"/v1/webhooks/{other_types['id']}", json={"description": "x"})
    assert r.status_code == 200 and r.json()["warnings"] == []
    # reads carry no warnings
    got = (await api.get(f"/v1/webhooks/{second['id']}")).json()
    assert "warnings" not in got


async def test_delete_answers_the_endpoints_final_state(api: httpx.AsyncClient) -> None:
    ep = await _endpoint(api, "http://127.0.0.1:9/final", ["contact.*"])
    r = await api.delete(f"/v1/webhooks/{ep['id']}")
    assert r.status_code == 200, r.text
    final = r.json()
    assert final["status"] == "disabled" and final["disabled_reason"] == "deleted"
    assert final["version"] == ep["version"] + 1 and final["updated_at"] >= ep["updated_at"]
    assert {k: final[k] for k in ("id", "url", "event_types", "ordering", "created_at")} == {
        k: ep[k] for k in ("id", "url", "event_types", "ordering", "created_at")
    }
    assert "secret" not in final
    assert (await api.get(f"/v1/webhooks/{ep['id']}")).status_code == 404
    assert (await api.delete(f"/v1/webhooks/{ep['id']}")).status_code == 404


async def test_deleting_an_endpoint_while_its_delivery_is_in_flight_holds_up_nothing(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """The attempt's outcome has no delivery left to be recorded on; the other outcomes are recorded as
    ever (an outcome batch naming a deleted delivery once failed whole and was retried for good)."""
    receiver.on("/slow", lambda _r, _i: Reply(200, delay=1.0))
    slow = await _endpoint(api, receiver.url("/slow"), ["contact.created"])
    await start_dispatcher(dispatcher_poll_seconds=0.2)
    await _contact(api)
    await wait_for(lambda: receiver.at("/slow"))
    assert (await api.delete(f"/v1/webhooks/{slow['id']}")).status_code == 200
    await wait_for(lambda: receiver.accepted("/slow"), within=10)
    kept = await _endpoint(api, receiver.url("/kept"), ["contact.created"])
    await _contact(api)
    await wait_for(lambda: receiver.accepted("/kept"), within=10)

    async def recorded() -> bool:
        listed = (await api.get(f"/v1/webhooks/{kept['id']}/deliveries")).json()["data"]
        return bool(listed) and listed[0]["status"] == "succeeded"

    await wait_for(recorded, within=10)


async def test_rotate_secret_signs_with_both(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    ep = await _endpoint(api, receiver.url(), ["contact.*"])
    old = str(ep["secret"])
    rotated = await api.post(f"/v1/webhooks/{ep['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    await start_dispatcher()
    await _contact(api)
    request = (await wait_for(lambda: receiver.accepted()))[0]
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    standardwebhooks.Webhook(old).verify(request.body, request.headers)
    standardwebhooks.Webhook(new).verify(request.body, request.headers)
    svix.webhooks.Webhook(new).verify(request.body, request.headers)


async def test_test_send_list_get_and_retry_delivery(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher, make_client: object
) -> None:
    ep = await _endpoint(api, receiver.url(), ["contact.*"])
    await start_dispatcher()
    sent = await api.post(f"/v1/webhooks/{ep['id']}/test")
    assert sent.status_code == 202, sent.text
    delivery = sent.json()
    assert delivery["event_type"] == "webhook.test" and delivery["endpoint_id"] == ep["id"]

    first = (await wait_for(lambda: receiver.accepted()))[0]
    payload = standardwebhooks.Webhook(str(ep["secret"])).verify(first.body, first.headers)
    assert payload["type"] == "webhook.test" and payload["id"] == delivery["event_id"]
    assert payload["data"]["object"]["id"] == ep["id"]

    async def settled() -> dict[str, object] | None:
        d = (await api.get(f"/v1/webhook-deliveries/{delivery['id']}")).json()
        return d if d["status"] == "succeeded" and len(d["attempt_log"]) == 1 else None

    got = await wait_for(settled)
    assert got["attempts"] == 1 and got["last_status_code"] == 200 and got["delivered_at"]
    assert got["next_attempt_at"] is None
    attempt = got["attempt_log"][0]  # type: ignore[index]
    assert attempt["status_code"] == 200 and attempt["latency_ms"] >= 0 and attempt["error"] is None
    assert attempt["response_body"] == "ok"
    listed = (await api.get(f"/v1/webhooks/{ep['id']}/deliveries")).json()
    assert [d["id"] for d in listed["data"]] == [delivery["id"]]
    only_failed = (await api.get(f"/v1/webhooks/{ep['id']}/deliveries", params={"status": "failed"})).json()
    assert only_failed["data"] == []

    stranger = await make_client()  # type: ignore[operator]
    assert (await stranger.get(f"/v1/webhook-deliveries/{delivery['id']}")).status_code == 404
    assert (await stranger.post(f"/v1/webhook-deliveries/{delivery['id']}/retry")).status_code == 404
    assert (await api.get(f"/v1/webhook-deliveries/{uuid.uuid4()}")).status_code == 404

    # a retry sends the same event again, under the same webhook-id
    again = await api.post(f"/v1/webhook-deliveries/{delivery['id']}/retry")
    assert again.status_code == 202, again.text
    await wait_for(lambda: len(receiver.accepted()) == 2)
    second = receiver.accepted()[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.body == first.body
    standardwebhooks.Webhook(str(ep["secret"])).verify(second.body, second.headers)

    async def logged_twice() -> bool:
        d = (await api.get(f"/v1/webhook-deliveries/{delivery['id']}")).json()
        return d["status"] == "succeeded" and len(d["attempt_log"]) == 2

    await wait_for(logged_twice)


async def test_recover_requeues_failed_since(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher, pool: asyncpg.Pool
) -> None:
    """Deliveries that exhausted their retries are re-sent by ``recover``; ones before ``since`` are not."""
    ep = await _endpoint(api, receiver.url(), ["contact.*"])
    old = await _contact(api)
    new = await _contact(api)
    # the first delivery failed long ago, the second just now
    await pool.execute(
        "UPDATE webhook_deliveries SET status = 'failed', created_at = now() - interval '3 days' "
        "WHERE endpoint_id = $1 AND object_id = $2",
        uuid.UUID(str(ep["id"])),
        uuid.UUID(str(old["id"])),
    )
    await pool.execute(
        "UPDATE webhook_deliveries SET status = 'failed' WHERE endpoint_id = $1 AND object_id = $2",
        uuid.UUID(str(ep["id"])),
        uuid.UUID(str(new["id"])),
    )
    await start_dispatcher()
    await asyncio.sleep(0.5)
    assert receiver.at() == []
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    r = await api.post(f"/v1/webhooks/{ep['id']}/recover", json={"since": since})
    assert r.status_code == 202, r.text
    assert r.json() == {"object": "recovery", "requeued": 1}
    got = await wait_for(lambda: receiver.accepted())
    assert got[0].json()["data"]["object"]["id"] == new["id"]
    await asyncio.sleep(0.5)
    assert len(receiver.at()) == 1


async def test_unparseable_urls_are_422_naming_url(api: httpx.AsyncClient) -> None:
    for url in ("https://[::1/", "http://[::1/hook", "https://exa]mple.com/"):
        r = await api.post("/v1/webhooks", json={"url": url, "event_types": ["*"]})
        assert r.status_code == 422, (url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["path"] == "/url"
    ep = await _endpoint(api, "http://127.0.0.1:9/hook", ["*"])
    r = await api.patch(f"/v1/webhooks/{ep['id']}", json={"url": "https://[::1/"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == "/url"
