"""Members on a real ``crm-api serve``: a key acting for a member, a batch with a bad owner, and moving a
member's records, as an HTTP client sees them."""

from __future__ import annotations

import uuid

import httpx
from live_server import serve


def test_a_member_key_a_bad_batch_owner_and_a_reassign_over_http(database_url: str) -> None:
    with (
        serve(database_url) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=30
        ) as admin,
    ):
        ann = admin.post("/v1/members", json={"email": "ann@example.com", "name": "Ann"}).json()
        bob = admin.post("/v1/members", json={"email": "bob@example.com", "name": "Bob"}).json()
        made = admin.post("/v1/api-keys", json={"name": "ann", "scopes": ["*"], "member_id": ann["id"]})
        assert made.status_code == 201, made.text
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {made.json()['key']}"}, timeout=30
        ) as as_ann:
            items = [
                {"email": "a@example.com", "owner_id": "me"},
                {"email": "b@example.com", "owner_id": str(uuid.uuid4())},
                {"email": "c@example.com", "owner_id": bob["id"]},
            ]
            r = as_ann.post("/v1/contacts/batch", json={"items": items}, headers={"Idempotency-Key": "b1"})
            assert r.status_code == 200, r.text
            results = r.json()["results"]
            assert [x["status"] for x in results] == [201, 422, 201]
            assert results[0]["object"]["owner_id"] == ann["id"]
            assert results[1]["error"]["errors"][0]["path"] == "/items/1/owner_id"
            feed = as_ann.get("/v1/events", params={"type": "contact.created"}).json()["data"]
            assert {e["actor"] for e in feed} == {f"member:{ann['id']}"}

        counts = admin.get(f"/v1/members/{ann['id']}/ownership").json()
        assert (counts["counts"]["contacts"], counts["total"]) == (1, 1)
        r = admin.post(f"/v1/members/{ann['id']}/reassign", json={"to_member_id": bob["id"]})
        assert r.status_code == 200 and r.json()["moved"]["contacts"] == 1, r.text
        assert admin.get(f"/v1/members/{bob['id']}/ownership").json()["counts"]["contacts"] == 2
        listed = admin.get("/v1/contacts", params={"owner_id": bob["id"]}).json()["data"]
        assert sorted(c["email"] for c in listed) == ["a@example.com", "c@example.com"]
