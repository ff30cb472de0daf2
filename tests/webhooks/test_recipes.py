"""The recipes of docs/INTEGRATIONS.md, done as an integration platform would do them: a polling trigger
deduped by id and version, an instant trigger over REST hooks (subscribe, receive, unsubscribe, 410), and
find or create through the upsert routes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import standardwebhooks
from receiver import Receiver, Reply, StartDispatcher, wait_for


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


class Poller:
    """What a platform keeps between polls: the dedupe keys it has seen."""

    def __init__(self, api: httpx.AsyncClient, params: dict[str, str], key: Any) -> None:
        self.api, self.params, self.key = api, params, key
        self.seen: set[Any] = set()

    async def poll(self) -> list[dict[str, Any]]:
        page = await _ok(await self.api.get("/v1/contacts", params={**self.params, "limit": "50"}))
        fresh = [c for c in page["data"] if self.key(c) not in self.seen]
        self.seen |= {self.key(c) for c in fresh}
        return fresh


async def test_a_polling_trigger_sees_each_new_and_each_updated_record_once(api: httpx.AsyncClient) -> None:
    new = Poller(api, {"sort": "-created_at"}, lambda c: c["id"])
    updated = Poller(
        api, {"sort": "-updated_at", "fields": "version,email"}, lambda c: f"{c['id']}:{c['version']}"
    )
    first = [await _ok(await api.post("/v1/contacts", json={"email": f"p{i}@x.com"}), 201) for i in range(3)]
    assert {c["id"] for c in await new.poll()} == {c["id"] for c in first}
    assert len(await updated.poll()) == 3
    assert await new.poll() == [] and await updated.poll() == []

    late = await _ok(await api.post("/v1/contacts", json={"email": "late@x.com"}), 201)
    await _ok(await api.patch(f"/v1/contacts/{first[0]['id']}", json={"first_name": "Ann"}))
    await _ok(await api.patch(f"/v1/contacts/{first[1]['id']}", json={"email": "p1@x.com"}))  # no change
    assert [c["id"] for c in await new.poll()] == [late["id"]]
    changed = await updated.poll()
    assert sorted((c["id"], c["version"]) for c in changed) == sorted([(first[0]["id"], 2), (late["id"], 1)])
    assert all(set(c) == {"id", "object", "version", "email"} for c in changed)


async def _deliveries_of(pool: asyncpg.Pool, endpoint_id: str, object_id: str) -> int:
    """Deliveries queued to the endpoint for the object's events (queued in the event's own statement, so
    this is settled the moment the write has answered)."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries d JOIN events e"
        " ON e.workspace_id = d.workspace_id AND e.id = d.event_id"
        " WHERE d.endpoint_id = $1 AND e.object_id = $2",
        uuid.UUID(endpoint_id),
        uuid.UUID(object_id),
    )
    return count


async def test_an_instant_trigger_subscribes_receives_unsubscribes_and_is_gone_on_410(
    api: httpx.AsyncClient, receiver: Receiver, start_dispatcher: StartDispatcher, pool: asyncpg.Pool
) -> None:
    hook = await _ok(
        await api.post("/v1/webhooks", json={"url": receiver.url(), "event_types": ["contact.created"]}), 201
    )
    await start_dispatcher()
    ann = await _ok(await api.post("/v1/contacts", json={"email": "ann@x.com"}), 201)
    await _ok(await api.patch(f"/v1/contacts/{ann['id']}", json={"first_name": "Ann"}))  # not subscribed
    (delivered,) = await wait_for(lambda: receiver.accepted())
    standardwebhooks.Webhook(hook["secret"]).verify(delivered.body, delivered.headers)
    body = delivered.json()
    assert body["type"] == "contact.created" and body["data"]["object"]["id"] == ann["id"]
    assert delivered.headers["webhook-id"] == body["id"]  # the platform dedupes on it

    await _ok(await api.delete(f"/v1/webhooks/{hook['id']}"))
    bob = await _ok(await api.post("/v1/contacts", json={"email": "bob@x.com"}), 201)
    assert await _deliveries_of(pool, hook["id"], bob["id"]) == 0

    receiver.on("/gone", lambda _r, _i: Reply(410))
    gone = await _ok(
        await api.post("/v1/webhooks", json={"url": receiver.url("/gone"), "event_types": ["contact.*"]}), 201
    )
    await _ok(await api.post("/v1/contacts", json={"email": "cy@x.com"}), 201)

    async def disabled() -> Any:
        endpoint = await _ok(await api.get(f"/v1/webhooks/{gone['id']}"))
        return endpoint if endpoint["status"] == "disabled" else None

    assert "410" in (await wait_for(disabled))["disabled_reason"]
    dee = await _ok(await api.post("/v1/contacts", json={"email": "dee@x.com"}), 201)
    assert await _deliveries_of(pool, gone["id"], dee["id"]) == 0


async def test_find_or_create_ends_as_one_record_however_often_it_runs(api: httpx.AsyncClient) -> None:
    created = await api.put("/v1/contacts/by-email/Ann@Example.com", json={"first_name": "Ann"})
    assert created.status_code == 201 and created.headers["location"].endswith(created.json()["id"])
    found = await api.put("/v1/contacts/by-email/ann@example.com", json={})
    assert found.status_code == 200 and found.json()["id"] == created.json()["id"]
    assert found.json()["version"] == 1  # found, nothing changed

    # a platform retrying at once, five times in parallel: one record
    results = await asyncio.gather(
        *(api.put("/v1/companies/by-domain/WWW.Acme.com.", json={"name": "Acme"}) for _ in range(5))
    )
    assert sorted(r.status_code for r in results) == [200, 200, 200, 200, 201]
    assert len({r.json()["id"] for r in results}) == 1 and results[0].json()["domain"] == "acme.com"

    path = "/v1/deals/by-external-id/zapier/run-42"
    first = await api.put(path, json={"name": "From the platform"})
    again = await api.put(path, json={"name": "From the platform"})
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
    # the pure "find" step: a list filtered by the key
    listed = await _ok(await api.get("/v1/contacts", params={"email": "ANN@example.com"}))
    assert [c["id"] for c in listed["data"]] == [created.json()["id"]]


async def test_a_polling_trigger_pages_on_sees_archivals_and_the_feed_follows_every_change(
    api: httpx.AsyncClient,
) -> None:
    """The polling recipe's notes: more than a page of changes between two polls is read by paging on until
    a page holds only keys already seen; ``include_archived=true`` shows an archival as an update; the feed
    (``sort=sequence&after=``) lists every change once, in order."""
    seen: set[str] = set()

    async def poll(**params: str) -> list[dict[str, Any]]:
        fresh: list[dict[str, Any]] = []
        query = {"sort": "-updated_at", "limit": "50", **params}
        while True:
            page = await _ok(await api.get("/v1/contacts", params=query))
            new = [c for c in page["data"] if f"{c['id']}:{c['version']}" not in seen]
            fresh += new
            if not new or not page["has_more"]:
                break
            query["cursor"] = page["next_cursor"]
        seen.update(f"{c['id']}:{c['version']}" for c in fresh)
        return fresh

    items = [{"email": f"page{i}@x.com"} for i in range(70)]
    made = [
        r["object"]
        for r in (await _ok(await api.post("/v1/contacts/batch", json={"items": items})))["results"]
    ]
    assert len(await poll()) == 70 and await poll() == []

    async def feed_after(sequence: int, count: int) -> list[dict[str, Any]]:
        async def settled() -> list[dict[str, Any]] | None:  # a writer in flight elsewhere holds it back
            after = {"sort": "sequence", "after": str(sequence), "limit": "200"}
            page: list[dict[str, Any]] = (await _ok(await api.get("/v1/events", params=after)))["data"]
            return page if len(page) >= count else None

        found: list[dict[str, Any]] = await wait_for(settled)
        return found

    created = await feed_after(0, 70)
    assert [e["object_id"] for e in created] == [c["id"] for c in made]

    archived = await _ok(await api.delete(f"/v1/contacts/{made[0]['id']}"))
    await _ok(await api.patch(f"/v1/contacts/{made[1]['id']}", json={"first_name": "Bo"}))
    assert [c["id"] for c in await poll()] == [made[1]["id"]]  # the archived one is left out
    again = await poll(include_archived="true")
    assert [(c["id"], c["version"], c["archived_at"] is not None) for c in again] == [
        (made[0]["id"], archived["version"], True)
    ]

    tail = [(e["type"], e["object_id"]) for e in await feed_after(created[-1]["sequence"], 2)]
    assert tail == [("contact.archived", made[0]["id"]), ("contact.updated", made[1]["id"])]


async def test_find_or_create_by_a_unique_custom_field(api: httpx.AsyncClient) -> None:
    definition = {
        "object_type": "contact",
        "name": "zap_id",
        "label": "Zap id",
        "type": "text",
        "unique": True,
    }
    await _ok(await api.post("/v1/custom-fields", json=definition), 201)
    path = "/v1/contacts/by-custom-field/zap_id/Z-1"
    first = await api.put(path, json={"email": "z@x.com"})
    again = await api.put(path, json={})
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert first.json()["id"] == again.json()["id"] and again.json()["custom_fields"]["zap_id"] == "Z-1"
