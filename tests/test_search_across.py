"""``GET /v1/search`` against ``crm-api serve``: each case of issue 14's section 4 on data whose answers are
known, the list's ``q=`` with the same folding, writes found by the next request, and another workspace's
look-alike data never in the answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_server import Server, new_key, serve


@pytest.fixture(scope="module")
def keys(database_url: str) -> tuple[str, str]:
    return new_key(database_url), new_key(database_url)  # two workspaces


@pytest.fixture(scope="module")
def server(database_url: str, keys: tuple[str, str]) -> Iterator[Server]:
    with serve(database_url, key=keys[0], settings={"CRM_PHONE_REGION": "US"}) as running:
        yield running


def _client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _post(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(path, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def seeded(server: Server, keys: tuple[str, str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    with _client(server, keys[1]) as other:  # look-alikes in another workspace, created first
        _post(other, "/v1/contacts", {"first_name": "José", "last_name": "García", "phone": "+15550102030"})
        _post(other, "/v1/companies", {"name": "Acme Other", "domain": "acme.org"})
    with _client(server, keys[0]) as api:
        ids["acme"] = _post(api, "/v1/companies", {"name": "Acme", "domain": "acme.com"})["id"]
        ids["globex"] = _post(api, "/v1/companies", {"name": "Globex Corporation", "domain": "globex.io"})[
            "id"
        ]
        people = {
            "jose": {"first_name": "José", "last_name": "García", "email": "jose.garcia@globex.io",
                     "phone": "+1 (555) 010-2030", "company_id": ids["globex"]},
            "john": {"first_name": "John", "last_name": "Smith", "email": "jsmith@initech.com"},
            "ann": {"first_name": "Ann", "last_name": "Lee", "email": "annlee@gmail.com",
                    "company_id": ids["acme"]},
            "ann2": {"first_name": "Ann", "last_name": "Other", "email": "ann@globex.io",
                     "company_id": ids["globex"]},
            "joan": {"first_name": "Joan", "last_name": "Smithers", "phone": "555 010 9999"},
        }  # fmt: skip
        for name, body in people.items():
            ids[name] = _post(api, "/v1/contacts", body)["id"]
        ids["deal"] = _post(api, "/v1/deals", {"name": "Enterprise renewal 2027"})["id"]
        ids["ticket"] = _post(api, "/v1/tickets", {"subject": "Printer on fire in the lobby"})["id"]
    return ids


def _hits(api: httpx.Client, q: str, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/v1/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def _first(api: httpx.Client, q: str, kind: str, **params: Any) -> str | None:
    return next((h["id"] for h in _hits(api, q, **params) if h["object"] == kind), None)


@pytest.fixture
def api(server: Server, keys: tuple[str, str], seeded: dict[str, str]) -> Iterator[httpx.Client]:
    with _client(server, keys[0]) as client:
        yield client


@pytest.mark.parametrize("typed", ["+1 (555) 010-2030", "555 010 2030", "15550102030", "555.010.2030"])
def test_a_phone_in_any_format_finds_the_contact(
    api: httpx.Client, seeded: dict[str, str], typed: str
) -> None:
    hits = _hits(api, typed)
    assert [h["id"] for h in hits] == [seeded["jose"]], hits  # not Joan's 555 010 9999, nor the other José
    assert hits[0] == {
        "object": "contact", "id": seeded["jose"], "title": "José García",
        "subtitle": "jose.garcia@globex.io", "score": 1.0,
    }  # fmt: skip


def test_a_company_by_its_domain_with_or_without_the_tld(api: httpx.Client, seeded: dict[str, str]) -> None:
    for typed in ("acme", "acme.com", "ACME.COM"):
        assert _first(api, typed, "company") == seeded["acme"], typed
    assert _first(api, "globex", "company", types="company") == seeded["globex"]


def test_an_email_by_its_local_part_or_its_domain(api: httpx.Client, seeded: dict[str, str]) -> None:
    assert _first(api, "jose.garcia", "contact") == seeded["jose"]
    assert _first(api, "jsmith", "contact") == seeded["john"]
    assert _first(api, "initech.com", "contact") == seeded["john"]
    assert {h["id"] for h in _hits(api, "globex.io", types="contact")} == {seeded["jose"], seeded["ann2"]}


def test_names_without_accents_with_a_typo_in_either_order(api: httpx.Client, seeded: dict[str, str]) -> None:
    assert _first(api, "jose", "contact") == seeded["jose"]
    assert _first(api, "Garcia José", "contact") == seeded["jose"]
    assert _first(api, "jonh smith", "contact") == seeded["john"]
    assert _first(api, "smith john", "contact") == seeded["john"]
    assert _first(api, "GARCÍA", "contact") == seeded["jose"]


def test_a_name_typed_whole_fills_the_page_before_near_matches(api: httpx.Client) -> None:
    """Names typed whole are read from the prefix index, and the trigram scan runs only when they do not
    fill the page: then the near matches come after them."""
    body = {"first_name": "Ximena", "last_name": "Quispé"}
    exact = {_post(api, "/v1/contacts", body)["id"] for _ in range(3)}
    near = _post(api, "/v1/contacts", {"first_name": "Ximena", "last_name": "Quispa"})["id"]
    for typed in ("ximena quispe", "Quispe Ximena"):
        page = _hits(api, typed, limit=2)
        assert len(page) == 2 and {h["id"] for h in page} <= exact, typed
        assert all(h["score"] == 1 and h["title"] == "Ximena Quispé" for h in page)
        every = _hits(api, typed, limit=10, types="contact")
        assert {h["id"] for h in every[:3]} == exact and every[3]["id"] == near, typed
        assert every[3]["score"] < 1
    assert _first(api, "ximena quispa", "contact") == near  # whole, but not the name of the three


def test_an_email_typed_from_its_start_finds_the_emails_that_start_so(api: httpx.Client) -> None:
    """A query shaped like an email's start is read from the email prefix index: the emails that start
    with it, the local part typed whole first, and not the near misses the trigram scan would add; with
    no email starting so, the trigram scan still finds the near ones."""
    made = {
        local: _post(api, "/v1/contacts", {"first_name": "Wendelin", "email": f"{local}@example.org"})["id"]
        for local in ("wendel.qa12", "wendel.qa123", "wendel.qa1299", "wendel.qa13", "wendel.qb12")
    }
    hits = _hits(api, "wendel.qa12", types="contact")
    assert [h["id"] for h in hits[:1]] == [made["wendel.qa12"]] and hits[0]["score"] == 1, hits
    assert {h["id"] for h in hits} == {made[k] for k in ("wendel.qa12", "wendel.qa123", "wendel.qa1299")}
    assert [h["id"] for h in _hits(api, "WENDEL.QA123@", types="contact")] == [made["wendel.qa123"]]
    near = {h["id"] for h in _hits(api, "wendel.qa14", types="contact")}  # no email starts so
    assert made["wendel.qa12"] in near and made["wendel.qa13"] in near, near


def test_a_name_and_a_company(api: httpx.Client, seeded: dict[str, str]) -> None:
    contacts = [h for h in _hits(api, "ann acme") if h["object"] == "contact"]
    assert contacts[0]["id"] == seeded["ann"], contacts
    assert contacts[0]["subtitle"].startswith("Acme")
    globex = [h["id"] for h in _hits(api, "ann globex", types="contact,company") if h["object"] == "contact"]
    assert globex[0] == seeded["ann2"]


def test_a_name_and_a_company_with_a_typo(api: httpx.Client, seeded: dict[str, str]) -> None:
    """No company starts with ``acmee``: its trigrams find Acme, then Ann Lee there by her name's start;
    at a company none of whose contacts starts with a word, its contacts close to the whole query."""
    contacts = [h for h in _hits(api, "ann acmee", types="contact,company") if h["object"] == "contact"]
    assert contacts and contacts[0]["id"] == seeded["ann"], contacts
    assert contacts[0]["subtitle"].startswith("Acme ·"), contacts
    near = [h for h in _hits(api, "anne globex", types="contact,company") if h["object"] == "contact"]
    assert near and near[0]["id"] == seeded["ann2"], near


def test_a_ticket_by_number_or_subject_words_a_deal_by_name(
    api: httpx.Client, seeded: dict[str, str]
) -> None:
    assert _hits(api, "printer fire")[0]["id"] == seeded["ticket"]
    number = api.get(f"/v1/tickets/{seeded['ticket']}").json()["number"]
    for typed in (f"#{number}", str(number)):
        hit = _hits(api, typed, types="ticket")[0]
        assert hit["id"] == seeded["ticket"] and hit["subtitle"].startswith(f"#{number} "), (typed, hit)
    other = _post(api, "/v1/tickets", {"subject": "Another"})
    assert other["number"] > number
    assert _hits(api, "renewal enterprise")[0]["id"] == seeded["deal"]
    assert _hits(api, "renewal", types="ticket") == []


def test_a_write_is_found_by_the_next_request(api: httpx.Client) -> None:
    made = _post(api, "/v1/contacts", {"first_name": "Zoë", "last_name": "Quixote"})
    assert _first(api, "zoe quixote", "contact") == made["id"]
    r = api.patch(
        f"/v1/contacts/{made['id']}",
        json={"last_name": "Lindqvist"},
        headers={"If-Match": f'"{made["version"]}"'},
    )
    assert r.status_code == 200, r.text
    assert _first(api, "zoe lindqvist", "contact") == made["id"]
    assert _first(api, "quixote", "contact") is None
    assert api.delete(f"/v1/contacts/{made['id']}").status_code == 200
    assert _first(api, "zoe lindqvist", "contact") is None


def test_another_workspace_never_appears(
    server: Server, keys: tuple[str, str], seeded: dict[str, str]
) -> None:
    with _client(server, keys[0]) as api, _client(server, keys[1]) as other:
        mine = {v for k, v in seeded.items()}
        for q in ("jose garcia", "5550102030", "acme"):
            assert {h["id"] for h in _hits(api, q)} <= mine, q
            assert not {h["id"] for h in _hits(other, q)} & mine, q
        assert [h["title"] for h in _hits(other, "acme")] == ["Acme Other"]


def test_include_object_types_scopes_and_bad_input(
    server: Server, api: httpx.Client, seeded: dict[str, str]
) -> None:
    hit = _hits(api, "enterprise renewal", include="object")[0]
    assert hit["data"] == api.get(f"/v1/deals/{seeded['deal']}").json()
    assert {h["object"] for h in _hits(api, "acme", types="company")} == {"company"}
    for params, pointer in (({"q": "x", "types": "lead"}, "/types"), ({"q": "x", "limit": "0"}, "/limit"),
                            ({}, "/q"), ({"q": "x", "include": "owner"}, "/include")):  # fmt: skip
        r = api.get("/v1/search", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert pointer in r.text, (pointer, r.text)
    made = api.post("/v1/api-keys", json={"name": "s", "scopes": ["search:read", "companies:read"]})
    assert made.status_code == 201, made.text
    with _client(server, made.json()["key"]) as narrow:
        assert {h["object"] for h in _hits(narrow, "acme")} == {"company"}  # only what it may read
        assert narrow.get("/v1/search", params={"q": "acme", "types": "contact"}).status_code == 403
    assert api.get("/v1/search", params={"q": "a\x00b"}).status_code in (400, 422)
    for nothing in ("a", " ", "!!", "-- ..."):  # too short, or nothing the trigram index can look up
        assert _hits(api, nothing) == [], nothing


def test_list_q_folds_as_search_does(api: httpx.Client, seeded: dict[str, str]) -> None:
    def listed(q: str) -> list[str]:
        r = api.get("/v1/contacts", params={"q": q})
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["data"]]

    assert listed("jose") == [seeded["jose"]]
    assert listed("GARCÍA") == [seeded["jose"]]
    assert listed("(555) 010-2030") == [seeded["jose"]]
    assert api.get("/v1/companies", params={"q": "acme"}).json()["data"][0]["id"] == seeded["acme"]


# a body for each searched resource, its searched text in capitals with accents and a ligature
SEARCHED = {
    "contacts": {"first_name": "ÆLFRÍÐ", "last_name": "Ñúñez"},
    "companies": {"name": "Société Ærøskøbing"},
    "deals": {"name": "Renovación Ærø"},
    "tickets": {"subject": "Impresora EN LLAMAS Ærø"},
    "activities": {"type": "note", "subject": "Reunión Ærø"},
    "sla-policies": {"name": "Prioridad Ærø", "targets": {"normal": {"first_response_minutes": 60}}},
    "teams": {"name": "Equipo Ærø"},
    "members": {"email": "aero@example.com", "name": "Ærø Núñez"},
}
TYPED = {
    "contacts": ("aelfrid nunez", "ÆLFRÍÐ ÑÚÑEZ"),
    "companies": ("societe aeroskobing", "SOCIÉTÉ"),
    "deals": ("renovacion aero", "RENOVACIÓN"),
    "tickets": ("en llamas aero", "IMPRESORA EN"),
    "activities": ("reunion aero", "REUNIÓN"),
    "sla-policies": ("prioridad aero", "PRIORIDAD ÆRØ"),
    "teams": ("equipo aero", "EQUIPO"),
    "members": ("aero nunez", "ÆRØ NÚÑEZ"),
}


OTHER = {"first_name": "Zed", "last_name": "Other", "name": "Other", "subject": "Other",
         "email": "other@example.com"}  # fmt: skip


@pytest.mark.parametrize("resource", list(SEARCHED))
def test_every_lists_q_folds_case_accents_and_ligatures(
    server: Server, database_url: str, resource: str
) -> None:
    """``q=`` on each resource's list folds what is typed as the search does (``textsearch.fold``): case,
    accents and ligatures, whichever way the text was written or is typed; a write is found at once."""
    with _client(server, new_key(database_url)) as api:  # a workspace of its own
        made = _post(api, f"/v1/{resource}", SEARCHED[resource])
        body = SEARCHED[resource]
        _post(api, f"/v1/{resource}", {**body, **{k: v for k, v in OTHER.items() if k in body}})
        for typed in TYPED[resource]:
            r = api.get(f"/v1/{resource}", params={"q": typed})
            assert r.status_code == 200, r.text
            assert [o["id"] for o in r.json()["data"]] == [made["id"]], (resource, typed)
        if resource == "tickets":
            r = api.get("/v1/tickets", params={"q": str(made["number"])})
            assert made["id"] in [o["id"] for o in r.json()["data"]]
        kind = resource.removesuffix("s").replace("companie", "company")
        if kind in ("contact", "company", "deal", "ticket"):  # the search across objects: found at once too
            hits = _hits(api, TYPED[resource][0], types=kind, include="object")
            assert hits[0]["id"] == made["id"], (resource, hits)
            assert hits[0]["data"] == api.get(f"/v1/{resource}/{made['id']}").json()
