"""``include=`` (related objects: those that are resources read in the objects' own statement, others one
statement per relation per page), ``fields=`` (sparse objects) and ``If-None-Match`` on the GET of one
object."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
from starlette.datastructures import QueryParams

from crm_api import jsonutil
from crm_api.activities.spec import ACTIVITIES
from crm_api.auth import Context, Principal
from crm_api.companies.spec import COMPANIES
from crm_api.contacts.spec import CONTACTS
from crm_api.deals.spec import DEALS
from crm_api.resources import includes, query, service

CONTACT, COMPANY = (next(i for i in DEALS.includes if i.name == n) for n in ("contact", "company"))
TARGETS = {"normal": {"first_response_minutes": 60, "resolution_minutes": 480}}


async def _made(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def _contacts(api: httpx.AsyncClient, n: int, **extra: Any) -> list[dict[str, Any]]:
    items = [{"email": f"p{i}-{uuid.uuid4().hex[:6]}@x.com", **extra} for i in range(n)]
    r = await _made(await api.post("/v1/contacts/batch", json={"items": items}), 200)
    return [x["object"] for x in r["results"]]


def _problem_path(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    path: str = response.json()["errors"][0]["path"]
    return path


async def test_a_contact_includes_its_company_in_get_list_and_search(api: httpx.AsyncClient) -> None:
    acme = await _made(await api.post("/v1/companies", json={"name": "Acme", "domain": "acme.com"}))
    ann = await _made(
        await api.post("/v1/contacts", json={"email": "ann@acme.com", "company_id": acme["id"]})
    )
    bob = await _made(await api.post("/v1/contacts", json={"email": "bob@nowhere.com"}))

    got = await _made(await api.get(f"/v1/contacts/{ann['id']}", params={"include": "company"}), 200)
    assert got["company"]["id"] == acme["id"] and got["company"]["object"] == "company"
    assert got["company"]["domain"] == "acme.com" and got["company_id"] == acme["id"]
    assert got["email"] == "ann@acme.com"

    page = await _made(await api.get("/v1/contacts", params={"include": "company"}), 200)
    by_id = {c["id"]: c for c in page["data"]}
    assert by_id[ann["id"]]["company"]["name"] == "Acme"
    assert by_id[bob["id"]]["company"] is None  # a to-one relation with no id is null, not absent

    plain = await _made(await api.get("/v1/contacts"), 200)
    assert all("company" not in c for c in plain["data"])

    found = await _made(
        await api.post(
            "/v1/contacts/search",
            params={"include": "company"},
            json={"filter": {"field": "email", "op": "eq", "value": "ann@acme.com"}},
        ),
        200,
    )
    assert [c["company"]["id"] for c in found["data"]] == [acme["id"]]


async def test_fields_trim_the_object_and_keep_id_object_and_the_relations(api: httpx.AsyncClient) -> None:
    acme = await _made(await api.post("/v1/companies", json={"name": "Acme"}))
    ann = await _made(
        await api.post(
            "/v1/contacts", json={"email": "a@x.com", "first_name": "Ann", "company_id": acme["id"]}
        )
    )
    got = await _made(await api.get(f"/v1/contacts/{ann['id']}", params={"fields": "email,first_name"}), 200)
    assert got == {"id": ann["id"], "object": "contact", "email": "a@x.com", "first_name": "Ann"}

    # repeated parameters work as well as commas (generated clients send either), and with include=
    r = await api.get(
        "/v1/contacts", params=[("fields", "email"), ("fields", "version"), ("include", "company")]
    )
    row = (await _made(r, 200))["data"][0]
    assert set(row) == {"id", "object", "email", "version", "company"}
    assert row["company"]["name"] == "Acme"

    found = await _made(await api.post("/v1/contacts/search", params={"fields": "email"}, json={}), 200)
    assert found["data"] == [{"id": ann["id"], "object": "contact", "email": "a@x.com"}]

    # a renamed column is asked for by its API name
    definition = await _made(
        await api.post(
            "/v1/custom-fields",
            json={"object_type": "contact", "name": "plan", "label": "Plan", "type": "text", "unique": True},
        )
    )
    shown = await api.get(f"/v1/custom-fields/{definition['id']}", params={"fields": "unique"})
    assert (await _made(shown, 200))["unique"] is True


async def test_unknown_relations_and_fields_are_422s_naming_the_parameter(api: httpx.AsyncClient) -> None:
    contact = (await _contacts(api, 1))[0]
    assert _problem_path(await api.get(f"/v1/contacts/{contact['id']}", params={"include": "owner"})) == (
        "/include"
    )
    assert _problem_path(await api.get("/v1/contacts", params={"include": "company,deals"})) == "/include"
    assert _problem_path(await api.get("/v1/contacts", params={"fields": "email,search_text"})) == "/fields"
    assert _problem_path(await api.get("/v1/contacts", params={"fields": "workspace_id"})) == "/fields"
    r = await api.post("/v1/contacts/search", params={"include": "x"}, json={})
    assert _problem_path(r) == "/include"
    # a resource without relations refuses any
    assert _problem_path(await api.get("/v1/sla-policies", params={"include": "tickets"})) == "/include"
    # the contacts of a company take them too (the contact list's parameters)
    company = await _made(await api.post("/v1/companies", json={"name": "C"}))
    r = await api.get(f"/v1/companies/{company['id']}/contacts", params={"fields": "nope"})
    assert _problem_path(r) == "/fields"


async def test_a_deal_includes_its_contact_company_pipeline_and_stage(api: httpx.AsyncClient) -> None:
    acme = await _made(await api.post("/v1/companies", json={"name": "Acme"}))
    ann = await _made(await api.post("/v1/contacts", json={"email": "ann@acme.com"}))
    deal = await _made(
        await api.post("/v1/deals", json={"name": "Big", "contact_id": ann["id"], "company_id": acme["id"]})
    )
    r = await api.get(f"/v1/deals/{deal['id']}", params={"include": "contact,company,pipeline,stage"})
    got = await _made(r, 200)
    assert got["contact"]["email"] == "ann@acme.com"
    assert got["company"]["name"] == "Acme"
    assert got["pipeline"]["object"] == "pipeline" and got["pipeline"]["id"] == deal["pipeline_id"]
    assert [s["name"] for s in got["pipeline"]["stages"]][:2] == ["Lead in", "Qualified"]
    assert got["stage"] == {
        "id": deal["stage_id"],
        "name": "Lead in",
        "position": 0,
        "probability": 0.1,
        "kind": "open",
    }


async def test_a_ticket_includes_its_requester_company_and_policy(api: httpx.AsyncClient) -> None:
    acme = await _made(await api.post("/v1/companies", json={"name": "Acme"}))
    ann = await _made(
        await api.post("/v1/contacts", json={"email": "ann@acme.com", "company_id": acme["id"]})
    )
    policy = await _made(await api.post("/v1/sla-policies", json={"name": "Std", "targets": TARGETS}))
    ticket = await _made(
        await api.post(
            "/v1/tickets", json={"subject": "Help", "requester_id": ann["id"], "sla_policy_id": policy["id"]}
        )
    )
    r = await api.get("/v1/tickets", params={"include": "requester,company,sla_policy"})
    got = (await _made(r, 200))["data"][0]
    assert got["id"] == ticket["id"]
    assert got["requester"]["id"] == ann["id"]
    assert got["company"]["id"] == acme["id"]  # a ticket takes its requester's company
    assert got["sla_policy"]["name"] == "Std"


async def test_a_company_includes_its_newest_live_contacts_twenty_at_most(api: httpx.AsyncClient) -> None:
    big = await _made(await api.post("/v1/companies", json={"name": "Big"}))
    small = await _made(await api.post("/v1/companies", json={"name": "Small"}))
    empty = await _made(await api.post("/v1/companies", json={"name": "Empty"}))
    many = await _contacts(api, 22, company_id=big["id"])
    few = await _contacts(api, 2, company_id=small["id"])
    await _made(await api.delete(f"/v1/contacts/{few[0]['id']}"), 200)  # archived: not listed

    page = await _made(await api.get("/v1/companies", params={"include": "contacts"}), 200)
    by_id = {c["id"]: c for c in page["data"]}
    listed = by_id[big["id"]]["contacts"]
    assert listed["has_more"] is True
    assert [c["id"] for c in listed["data"]] == [c["id"] for c in reversed(many)][:20]
    assert by_id[small["id"]]["contacts"] == {"data": [few[1]], "has_more": False}
    assert by_id[empty["id"]]["contacts"] == {"data": [], "has_more": False}


async def test_an_activity_includes_its_links_and_never_another_workspaces_objects(
    api: httpx.AsyncClient, make_client: Any, pool: asyncpg.Pool
) -> None:
    people = await _contacts(api, 21)
    acme = await _made(await api.post("/v1/companies", json={"name": "Acme"}))
    ids = [p["id"] for p in people]
    activity = await _made(
        await api.post(
            "/v1/activities", json={"type": "note", "contact_ids": ids, "company_ids": [acme["id"]]}
        )
    )
    r = await api.get(f"/v1/activities/{activity['id']}", params={"include": "contacts,companies,deals"})
    got = await _made(r, 200)
    assert [c["id"] for c in got["contacts"]["data"]] == ids[:20]  # in the activity's order
    assert got["contacts"]["has_more"] is True
    assert got["companies"] == {"data": [acme], "has_more": False}
    assert got["deals"] == {"data": [], "has_more": False}

    # an id list holds no foreign key: plant another workspace's contact in it, as a bug might
    other = await make_client()
    stranger = (await _contacts(other, 1))[0]
    await pool.execute(
        "UPDATE activities SET contact_ids = $1 WHERE workspace_id = $2 AND id = $3",
        [uuid.UUID(stranger["id"]), uuid.UUID(ids[0])],
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(activity["id"]),
    )
    r = await api.get(f"/v1/activities/{activity['id']}", params={"include": "contacts"})
    assert (await _made(r, 200))["contacts"] == {"data": [people[0]], "has_more": False}
    # and another workspace's key sees nothing of this one through its own includes
    theirs = await _made(await other.get("/v1/contacts", params={"include": "company"}), 200)
    assert [c["id"] for c in theirs["data"]] == [stranger["id"]]


async def test_a_list_page_reads_its_to_one_relations_in_its_own_statement(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    tagged = {"tags": ["vip"], "custom_fields": {}}
    acme = await _made(await api.post("/v1/companies", json={"name": "Acme", "domain": "acme.io", **tagged}))
    ann = await _made(await api.post("/v1/contacts", json={"email": "ann@acme.io", **tagged}))
    deals = []
    for i in range(3):
        body: dict[str, Any] = {"name": f"D{i}", "amount": "12.50", "currency": "EUR"}
        if i < 2:  # the third names neither: its relations are null
            body |= {"contact_id": ann["id"], "company_id": acme["id"]}
        deals.append(await _made(await api.post("/v1/deals", json=body)))
    everything = "contact,company,pipeline,stage"
    page = await _made(await api.get("/v1/deals", params={"include": everything, "limit": 2}), 200)
    rest = await _made(
        await api.get("/v1/deals", params={"include": everything, "cursor": page["next_cursor"]}), 200
    )
    listed = page["data"] + rest["data"]
    assert [d["id"] for d in listed] == [d["id"] for d in reversed(deals)]
    for deal in listed:  # the same objects, to the byte, as a get reads them with a statement each
        got = await _made(await api.get(f"/v1/deals/{deal['id']}", params={"include": everything}), 200)
        assert deal == got
    assert listed[0]["contact"] is None and listed[0]["company"] is None
    assert listed[1]["contact"]["tags"] == ["vip"] and listed[1]["company"]["domain"] == "acme.io"
    found = await _made(
        await api.post("/v1/deals/search", params={"include": "contact", "fields": "name"}, json={}), 200
    )
    assert [d["contact"] and d["contact"]["id"] for d in found["data"]] == [None, ann["id"], ann["id"]]
    assert set(found["data"][1]) == {"id", "object", "name", "contact"}

    ws: uuid.UUID = api.workspace_id  # type: ignore[attr-defined]
    ctx = Context(Principal(ws, uuid.uuid4(), frozenset({"*"})), None)

    async def count(include: str) -> int:
        params = QueryParams({"limit": "50", "include": include})
        sent, _page = await _statements(pool, lambda conn: query.list_page(conn, DEALS, ctx, params))
        return sent

    assert await count("contact,company") == 1
    assert await count(everything) == 3  # pipelines and stages are no resources: a statement each
    for deal in listed:  # one object: its relations to resources in its own statement too
        oid = uuid.UUID(deal["id"])
        sent, row = await _statements(
            pool, lambda conn, oid=oid: service.get(conn, DEALS, ctx, oid, (CONTACT, COMPANY))
        )
        assert sent == 1 and (row["related:contact"] is None) == (deal["contact"] is None)


_INTROSPECTION = ("SELECT current_setting('jit')", "WITH RECURSIVE typeinfo_tree", "SELECT set_config('jit'")


async def _statements(pool: asyncpg.Pool, op: Any) -> tuple[int, Any]:
    """The statements ``op(conn)`` sends on one connection, asyncpg's own type introspection aside."""
    sent: list[str] = []
    async with pool.acquire() as conn:

        def log(record: Any) -> None:
            if not " ".join(record.query.split()).startswith(_INTROSPECTION):
                sent.append(record.query)

        conn.add_query_logger(log)
        try:
            result = await op(conn)
        finally:
            await asyncio.sleep(0)  # loggers run soon after the statement, not during it
            conn.remove_query_logger(log)
    return len(sent), result


async def test_one_statement_per_relation_whatever_the_page_size(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    companies = [await _made(await api.post("/v1/companies", json={"name": f"C{i}"})) for i in range(3)]
    people = []
    for i in range(30):
        people += await _contacts(api, 1, company_id=companies[i % 3]["id"])
    links = [p["id"] for p in people]
    for i in range(30):
        body = {"type": "note", "contact_ids": links[i : i + 3], "company_ids": [companies[i % 3]["id"]]}
        await _made(await api.post("/v1/activities", json=body))
    ws: uuid.UUID = api.workspace_id  # type: ignore[attr-defined]
    ctx = Context(Principal(ws, uuid.uuid4(), frozenset({"*"})), None)

    async def listed(spec: Any, limit: int, include: str) -> tuple[int, Any]:
        params = QueryParams({"limit": str(limit), "include": include} if include else {"limit": str(limit)})
        return await _statements(pool, lambda conn: query.list_page(conn, spec, ctx, params))

    plain_one, _ = await listed(CONTACTS, 1, "")
    plain_all, _ = await listed(CONTACTS, 50, "")
    one, page_of_one = await listed(CONTACTS, 1, "company")
    many, page_of_all = await listed(CONTACTS, 50, "company")
    assert plain_one == plain_all == 1
    assert one == many == 1  # a to-one relation is read in the page's own statement
    assert len(page_of_one["data"]) == 1 and len(page_of_all["data"]) == 30
    # the related objects are JSON text for the response to embed: read them as a client does
    listed_all = jsonutil.loads(jsonutil.dumps(page_of_all["data"]))
    assert all(c["company"]["id"] == c["company_id"] for c in listed_all)

    # to-many relations too: an id list and the rows that point here, in the page's own statement
    one, _ = await listed(ACTIVITIES, 1, "contacts,companies")
    many, page = await listed(ACTIVITIES, 50, "contacts,companies")
    assert one == many == 1
    activities = jsonutil.loads(jsonutil.dumps(page["data"]))
    assert len(activities) == 30
    for a in activities:
        assert [c["id"] for c in a["contacts"]["data"]] == a["contact_ids"]
        assert [c["id"] for c in a["companies"]["data"]] == a["company_ids"]
        assert a["contacts"]["has_more"] is False

    one, _ = await listed(COMPANIES, 1, "contacts")
    many, page = await listed(COMPANIES, 50, "contacts")
    assert one == many == 1
    listed_companies = jsonutil.loads(jsonutil.dumps(page["data"]))
    assert sorted(len(c["contacts"]["data"]) for c in listed_companies) == [10, 10, 10]
    assert all(p["company_id"] == c["id"] for c in listed_companies for p in c["contacts"]["data"])

    # one object: its relations to resources in its own statement, a loader's a statement each
    async def got(spec: Any, oid: str, include: str) -> tuple[int, dict[str, Any]]:
        shaping = includes.requested(spec, QueryParams({"include": include}))
        joined = includes.joined(shaping)

        async def read(conn: Any) -> list[dict[str, Any]]:
            assert shaping is not None
            row = await service.get(conn, spec, ctx, uuid.UUID(oid), joined)
            return await includes.shape(conn, spec, ws, [includes.converter(spec, joined)(row)], shaping)

        sent, shaped = await _statements(pool, read)
        return sent, jsonutil.loads(jsonutil.dumps(shaped[0]))

    sent, company = await got(COMPANIES, companies[0]["id"], "contacts")
    assert sent == 1 and len(company["contacts"]["data"]) == 10
    sent, activity = await got(ACTIVITIES, activities[0]["id"], "contacts,companies")
    assert sent == 1 and activity["contacts"] == activities[0]["contacts"]


async def test_if_none_match_answers_304_until_the_object_changes(api: httpx.AsyncClient) -> None:
    contact = (await _contacts(api, 1))[0]
    url = f"/v1/contacts/{contact['id']}"
    first = await api.get(url)
    etag = first.headers["etag"]
    assert etag == '"1"'
    for held in (etag, f"W/{etag}", f'"7", {etag}', "*"):
        r = await api.get(url, headers={"If-None-Match": held})
        assert r.status_code == 304 and r.headers["etag"] == etag and r.content == b""
    # with fields= the version still says it all; with include= the related objects may have moved
    assert (
        await api.get(url, params={"fields": "email"}, headers={"If-None-Match": etag})
    ).status_code == 304
    r = await api.get(url, params={"include": "company"}, headers={"If-None-Match": etag})
    assert r.status_code == 200
    await _made(await api.patch(url, json={"first_name": "New"}), 200)
    r = await api.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["etag"] == '"2"' and r.json()["first_name"] == "New"
    # another workspace's object is a 404 whatever is held
    other = f"/v1/contacts/{uuid.uuid4()}"
    assert (await api.get(other, headers={"If-None-Match": "*"})).status_code == 404


async def test_the_spec_declares_include_fields_and_the_related_objects(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for path, method in (
        ("/v1/contacts/{id}", "get"),
        ("/v1/contacts", "get"),
        ("/v1/contacts/search", "post"),
    ):
        params = {p.get("name"): p for p in doc["paths"][path][method]["parameters"]}
        assert params["include"]["schema"]["items"] == {"$ref": "#/components/schemas/ContactInclude"}
        assert params["fields"]["schema"]["items"] == {"$ref": "#/components/schemas/ContactField"}
    assert "If-None-Match" in {p.get("name") for p in doc["paths"]["/v1/contacts/{id}"]["get"]["parameters"]}
    assert "304" in doc["paths"]["/v1/deals/{id}"]["get"]["responses"]
    assert schemas["ContactInclude"]["enum"] == ["company"]
    assert schemas["DealInclude"]["enum"] == ["contact", "company", "pipeline", "stage"]
    assert {"email", "id", "object", "version"} <= set(schemas["ContactField"]["enum"])
    assert schemas["Contact"]["properties"]["company"]["anyOf"][0] == {"$ref": "#/components/schemas/Company"}
    assert "company" not in schemas["Contact"]["required"]
    assert schemas["Company"]["properties"]["contacts"] == {"$ref": "#/components/schemas/ContactPage"}
    assert schemas["Deal"]["properties"]["stage"]["anyOf"][0] == {"$ref": "#/components/schemas/Stage"}
    assert schemas["Activity"]["properties"]["tickets"] == {"$ref": "#/components/schemas/TicketPage"}


async def test_an_included_object_is_the_object_its_get_answers_for_every_relation_kind(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Every relation kind, in a get and in a list page (where a to-one relation to a resource is JSON built
    by PostgreSQL), against the GET of the related object: timestamps with and without microseconds (and
    trailing zeros), decimals with trailing zeros, dates, arrays, booleans, custom fields."""
    acme = await _made(
        await api.post(
            "/v1/companies", json={"name": "Acmé", "annual_revenue": "1200.50", "tags": ["a", "b"]}
        )
    )
    ann = await _made(
        await api.post(
            "/v1/contacts",
            json={"email": "ann@acme.com", "company_id": acme["id"], "marketing_consent": True},
        )
    )
    policy = await _made(await api.post("/v1/sla-policies", json={"name": "Std", "targets": TARGETS}))
    deal = await _made(
        await api.post(
            "/v1/deals",
            json={
                "name": "Big",
                "amount": "10.00",
                "currency": "EUR",
                "expected_close_date": "2027-01-31",
                "contact_id": ann["id"],
                "company_id": acme["id"],
            },
        )
    )
    ticket = await _made(
        await api.post(
            "/v1/tickets", json={"subject": "Help", "requester_id": ann["id"], "sla_policy_id": policy["id"]}
        )
    )
    activity = await _made(
        await api.post(
            "/v1/activities",
            json={
                "type": "note",
                "contact_ids": [ann["id"]],
                "company_ids": [acme["id"]],
                "deal_ids": [deal["id"]],
            },
        )
    )
    ws: uuid.UUID = api.workspace_id  # type: ignore[attr-defined]
    # formats a client's writes rarely give: a whole second, trailing zeros, custom fields of every JSON kind
    await pool.execute(
        "UPDATE contacts SET marketing_consent_at = '2026-01-02 03:04:05+00', created_at = '2026-01-02 "
        "03:04:05.120000+00', custom_fields = $3 WHERE workspace_id = $1 AND id = $2",
        ws,
        uuid.UUID(ann["id"]),
        {"score": 1.5, "big": 12345678901, "none": None, "list": [1, "é", {"x": True}], "s": 'a"b\\\n'},
    )
    await pool.execute(
        "UPDATE companies SET updated_at = '2026-05-06 07:08:09.000001+00' "
        "WHERE workspace_id = $1 AND id = $2",
        ws,
        uuid.UUID(acme["id"]),
    )

    async def get(path: str) -> Any:
        return await _made(await api.get(path), 200)

    contact, company = await get(f"/v1/contacts/{ann['id']}"), await get(f"/v1/companies/{acme['id']}")
    assert contact["marketing_consent_at"] == "2026-01-02T03:04:05Z"
    assert contact["created_at"] == "2026-01-02T03:04:05.120000Z"
    assert company["annual_revenue"] == "1200.50"
    one = {
        "deals": (deal["id"], {"contact": contact, "company": company}),
        "contacts": (ann["id"], {"company": company}),
        "tickets": (
            ticket["id"],
            {
                "requester": contact,
                "company": company,
                "sla_policy": await get(f"/v1/sla-policies/{policy['id']}"),
            },
        ),
    }
    for resource, (oid, expected) in one.items():
        include = ",".join(expected)
        got = await get(f"/v1/{resource}/{oid}?include={include}")
        page = await get(f"/v1/{resource}?include={include}")
        listed = next(o for o in page["data"] if o["id"] == oid)
        for name, related in expected.items():
            assert got[name] == related, (resource, name)
            assert listed[name] == related, (resource, name)

    # the loaders' objects: a pipeline as its get answers it, a stage as its pipeline shows it
    pipeline = await get(f"/v1/pipelines/{deal['pipeline_id']}")
    got = await get(f"/v1/deals/{deal['id']}?include=pipeline,stage")
    assert got["pipeline"] == pipeline
    assert got["stage"] == next(s for s in pipeline["stages"] if s["id"] == deal["stage_id"])

    # to-many: an id list and the rows that point here
    fresh_deal = await get(f"/v1/deals/{deal['id']}")
    got = await get(f"/v1/activities/{activity['id']}?include=contacts,companies,deals")
    assert got["contacts"]["data"] == [contact]
    assert got["companies"]["data"] == [company]
    assert got["deals"]["data"] == [fresh_deal]
    got = await get(f"/v1/companies/{acme['id']}?include=contacts")
    assert got["contacts"]["data"] == [contact]


# issue 14's relations, in its order (teams came later: a team includes its members)
DECLARED = {
    "contacts": ["company"],
    "deals": ["contact", "company", "pipeline", "stage"],
    "tickets": ["requester", "company", "sla_policy"],
    "activities": ["contacts", "companies", "deals", "tickets"],
    "companies": ["contacts"],
    "teams": ["members"],
}


async def _one_of_each(api: httpx.AsyncClient, tag: str = "") -> dict[str, tuple[str, dict[str, Any]]]:
    """An object of every resource with relations, each relation set: resource -> (id, {relation: the id,
    or the ids in order, it must show})."""
    acme = await _made(await api.post("/v1/companies", json={"name": f"Acme{tag}"}))
    ann = await _made(
        await api.post("/v1/contacts", json={"email": f"ann{tag}@acme.com", "company_id": acme["id"]})
    )
    policy = await _made(await api.post("/v1/sla-policies", json={"name": f"Std{tag}", "targets": TARGETS}))
    deal = await _made(
        await api.post("/v1/deals", json={"name": "Big", "contact_id": ann["id"], "company_id": acme["id"]})
    )
    ticket = await _made(
        await api.post(
            "/v1/tickets", json={"subject": "Help", "requester_id": ann["id"], "sla_policy_id": policy["id"]}
        )
    )
    links = {"contact_ids": [ann["id"]], "company_ids": [acme["id"]], "deal_ids": [deal["id"]],
             "ticket_ids": [ticket["id"]]}  # fmt: skip
    activity = await _made(await api.post("/v1/activities", json={"type": "call", **links}))
    member = await _made(await api.post("/v1/members", json={"email": f"m{tag}@example.com", "name": "M"}))
    team = await _made(
        await api.post("/v1/teams", json={"name": f"Sales{tag}", "member_ids": [member["id"]]})
    )
    return {
        "contacts": (ann["id"], {"company": acme["id"]}),
        "deals": (
            deal["id"],
            {
                "contact": ann["id"],
                "company": acme["id"],
                "pipeline": deal["pipeline_id"],
                "stage": deal["stage_id"],
            },
        ),
        "tickets": (
            ticket["id"],
            {"requester": ann["id"], "company": acme["id"], "sla_policy": policy["id"]},
        ),
        "activities": (
            activity["id"],
            {
                "contacts": [ann["id"]],
                "companies": [acme["id"]],
                "deals": [deal["id"]],
                "tickets": [ticket["id"]],
            },
        ),
        "companies": (acme["id"], {"contacts": [ann["id"]]}),
        "teams": (team["id"], {"members": [member["id"]]}),
    }


def _shows(got: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    for name, want in expected.items():
        related = got[name]
        if isinstance(want, list):
            assert set(related) == {"data", "has_more"}, (where, name, related)
            assert [o["id"] for o in related["data"]] == want and related["has_more"] is False, (where, name)
        else:
            assert related is not None and related["id"] == want, (where, name, related)


async def test_every_resource_includes_its_relations_in_get_list_and_search(api: httpx.AsyncClient) -> None:
    """Issue 14's "include= on get, list and POST /search of every resource", with fields= beside it, and
    the 422s naming /include and /fields on each of the three routes."""
    from crm_api.resources.spec import REGISTRY

    assert {n: [i.name for i in s.includes] for n, s in REGISTRY.items() if s.includes} == DECLARED
    made = await _one_of_each(api)
    assert set(made) == set(DECLARED)
    for resource, (oid, expected) in made.items():
        include = ",".join(DECLARED[resource])
        got = await _made(await api.get(f"/v1/{resource}/{oid}", params={"include": include}), 200)
        _shows(got, expected, f"get {resource}")
        page = await _made(await api.get(f"/v1/{resource}", params={"include": include}), 200)
        _shows(next(o for o in page["data"] if o["id"] == oid), expected, f"list {resource}")
        found = await _made(
            await api.post(f"/v1/{resource}/search", params={"include": include}, json={}), 200
        )
        _shows(next(o for o in found["data"] if o["id"] == oid), expected, f"search {resource}")
        # fields= with include=: the main object trimmed, its relations whole
        sparse = {"include": include, "fields": "version"}
        for r in (
            await api.get(f"/v1/{resource}/{oid}", params=sparse),
            await api.get(f"/v1/{resource}", params=sparse),
            await api.post(f"/v1/{resource}/search", params=sparse, json={}),
        ):
            body = await _made(r, 200)
            one = next(o for o in body["data"] if o["id"] == oid) if body.get("object") == "list" else body
            assert set(one) == {"id", "object", "version", *DECLARED[resource]}, (resource, one)
            _shows(one, expected, f"sparse {resource}")
        for params, pointer in (({"include": "nope"}, "/include"), ({"fields": "nope"}, "/fields")):
            assert _problem_path(await api.get(f"/v1/{resource}/{oid}", params=params)) == pointer
            assert _problem_path(await api.get(f"/v1/{resource}", params=params)) == pointer
            r = await api.post(f"/v1/{resource}/search", params=params, json={})
            assert _problem_path(r) == pointer, resource


async def test_the_spec_declares_include_and_fields_on_every_route_that_takes_them(
    api: httpx.AsyncClient,
) -> None:
    doc = (await api.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for resource, names in DECLARED.items():
        for path, method in ((f"/v1/{resource}/{{id}}", "get"), (f"/v1/{resource}", "get"),
                             (f"/v1/{resource}/search", "post")):  # fmt: skip
            params = {p.get("name"): p for p in doc["paths"][path][method]["parameters"]}
            ref = params["include"]["schema"]["items"]["$ref"]
            assert schemas[ref.rsplit("/", 1)[1]]["enum"] == names, (path, method)
            assert "$ref" in params["fields"]["schema"]["items"], (path, method)


async def test_if_none_match_on_the_get_of_every_versioned_object(api: httpx.AsyncClient) -> None:
    """Every GET of one object that answers an ETag declares If-None-Match and its 304, and answers it
    (a webhook endpoint's too); a pipeline's version moves with its stages."""
    made = await _one_of_each(api)
    paths = [f"/v1/{resource}/{oid}" for resource, (oid, _) in made.items()]
    deal_relations = made["deals"][1]
    field = {"object_type": "deal", "name": "region", "label": "Region", "type": "text"}
    paths += [
        f"/v1/pipelines/{deal_relations['pipeline']}",
        f"/v1/sla-policies/{made['tickets'][1]['sla_policy']}",
        f"/v1/custom-fields/{(await _made(await api.post('/v1/custom-fields', json=field)))['id']}",
    ]
    # an endpoint for webhook.test alone: no other test's dispatcher has anything to send to it
    hook = {"url": "http://127.0.0.1:18960/never", "event_types": ["webhook.test"]}
    paths.append(f"/v1/webhooks/{(await _made(await api.post('/v1/webhooks', json=hook)))['id']}")
    for path in paths:
        first = await api.get(path)
        assert first.status_code == 200, (path, first.text)
        etag = first.headers["etag"]
        r = await api.get(path, headers={"If-None-Match": etag})
        assert (r.status_code, r.headers.get("etag"), r.content) == (304, etag, b""), path

    pipeline = f"/v1/pipelines/{deal_relations['pipeline']}"
    held = (await api.get(pipeline)).headers["etag"]
    await _made(await api.post(f"{pipeline}/stages", json={"name": "Late"}), 200)
    r = await api.get(pipeline, headers={"If-None-Match": held})
    assert r.status_code == 200 and r.headers["etag"] != held and r.json()["stages"][-1]["name"] == "Late"

    doc = (await api.get("/openapi.json")).json()
    # webhook endpoints too: the dispatcher's disable raises an endpoint's version (tests/webhooks)
    for path, item in doc["paths"].items():
        get = item.get("get")
        if not path.endswith("/{id}") or get is None:
            continue
        if "ETag" in get["responses"]["200"].get("headers", {}):
            assert "304" in get["responses"], path
            assert "If-None-Match" in {p.get("name") for p in get["parameters"]}, path


async def test_one_statement_per_relation_in_lists_and_searches_of_every_resource(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Every resource with relations, its list and its POST /search with all its relations, and a search
    sorted by a custom field (whose page reads its relations apart): the same number of statements for a
    page of one object and for a page of all three, one plus one per relation read by a loader."""
    from crm_api.resources.schemas import SearchRequest
    from crm_api.resources.spec import REGISTRY

    for tag in ("1", "2", "3"):
        await _one_of_each(api, tag)
    field = {"object_type": "contact", "name": "rank", "label": "Rank", "type": "number"}
    await _made(await api.post("/v1/custom-fields", json=field))
    for rank, contact in enumerate((await _made(await api.get("/v1/contacts"), 200))["data"]):
        await _made(
            await api.patch(f"/v1/contacts/{contact['id']}", json={"custom_fields": {"rank": rank}}), 200
        )
    ws: uuid.UUID = api.workspace_id  # type: ignore[attr-defined]
    ctx = Context(Principal(ws, uuid.uuid4(), frozenset({"*"})), None)

    async def page(spec: Any, limit: int, how: str, sort: str | None = None) -> tuple[int, int]:
        include = ",".join(DECLARED[spec.name])
        shaping = includes.requested(spec, QueryParams({"include": include}))
        assert shaping is not None

        async def op(conn: Any) -> int:
            if how == "list":
                got = await query.list_page(
                    conn, spec, ctx, QueryParams({"limit": str(limit), "include": include})
                )
            else:
                body = SearchRequest(limit=limit, sort=[sort] if sort else None).model_dump()
                got = await query.search(conn, spec, ctx, body, includes.joined(shaping))
                got["data"] = await includes.shape(conn, spec, ws, got["data"], shaping)
            shaped = jsonutil.loads(jsonutil.dumps(got["data"]))
            assert all(name in o for o in shaped for name in DECLARED[spec.name])
            return len(shaped)

        return await _statements(pool, op)

    loaders = {"deals": 2}  # pipelines and stages are no resources: a statement each
    for name in DECLARED:
        spec = REGISTRY[name]
        for how in ("list", "search"):
            one, rows_one = await page(spec, 1, how)
            all_, rows_all = await page(spec, 50, how)
            assert (rows_one, rows_all) == (1, 3), (name, how)
            assert one == all_ == 1 + loaders.get(name, 0), (name, how, one, all_)
    one, _ = await page(CONTACTS, 1, "search", "custom_fields.rank")
    all_, rows = await page(CONTACTS, 50, "search", "custom_fields.rank")
    assert rows == 3 and one == all_, (one, all_)
