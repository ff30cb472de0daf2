"""A resource's fields are declared in its model; everything else that names them must agree.

For every registered resource (and the ticket comments, a spec without routes of its own) the spec's
columns, the model's ``Table``, the migrated database's columns, the read schema, the write schemas, the
spec's filters and sorts, and ``to_api`` are compared; then one object of each resource is written through
the API and its response compared with its row and with what a read returns. A field added to one place
and not the others fails here.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError, create_model

from crm_api import jsonutil
from crm_api.app import create_app  # noqa: F401  (imports every resource, so the registry is full)
from crm_api.models import Base
from crm_api.resources.spec import REGISTRY, SYSTEM_COLUMNS, FieldType, ResourceSpec, field_type_of
from crm_api.tickets.spec import COMMENTS

SPECS = [*REGISTRY.values(), COMMENTS]

# information_schema's names for the types a field can have
_DB_TYPES: dict[str, FieldType] = {
    "text": "text",
    "uuid": "uuid",
    "integer": "bigint",
    "bigint": "bigint",
    "numeric": "numeric",
    "boolean": "boolean",
    "timestamp with time zone": "timestamptz",
    "date": "date",
    "jsonb": "jsonb",
    "_text": "text[]",
    "_uuid": "uuid[]",
}

Columns = dict[str, tuple[str, bool]]
"""column -> (its field type, or the database's name for a type no field can have; nullable)"""


async def _db_columns(pool: asyncpg.Pool, table: str) -> Columns:
    rows = await pool.fetch(
        "SELECT column_name, data_type, udt_name, is_nullable = 'YES' AS nullable "
        "FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
        table,
    )
    return {
        r["column_name"]: (
            _DB_TYPES.get(r["udt_name"] if r["data_type"] == "ARRAY" else r["data_type"], r["data_type"]),
            r["nullable"],
        )
        for r in rows
    }


def _accepts_none(schema: type[BaseModel], name: str) -> bool:
    try:
        TypeAdapter(schema.model_fields[name].annotation).validate_python(None)
    except ValidationError:
        return False
    return True


def disagreements(spec: ResourceSpec, db: Columns) -> list[str]:
    """Every way the declarations of ``spec``'s fields disagree, one line each."""
    found: list[str] = []
    columns = list(spec.columns)
    if len(set(columns)) != len(columns):
        found.append(f"the spec names a column twice: {columns}")
    table = Base.metadata.tables.get(spec.table)
    model = set(table.columns.keys()) if table is not None else set()
    for name in sorted(set(columns) ^ model):
        found.append(f"{name}: {'in the spec, not in the model' if name in columns else 'in the model only'}")
    for name in sorted(set(columns) ^ set(db)):
        found.append(
            f"{name}: {'in the spec, not migrated' if name in columns else 'migrated, not in the spec'}"
        )
    # the types filters, sorts and cursors cast to, the system columns' too
    for name in (*spec.field_names, *(c for c in SYSTEM_COLUMNS if c != "workspace_id")):
        said = spec.field_type(name)
        if table is not None and name in table.columns and field_type_of(table.columns[name].type) != said:
            found.append(f"{name}: the spec says {said}, the model {table.columns[name].type}")
        if name in db and db[name][0] != said:
            found.append(f"{name}: the spec says {said}, the database {db[name][0]}")

    # what clients read: to_api over the database's row, the read schema, and nulls
    api = spec.to_api({name: None for name in db}) if set(columns) <= set(db) else {}
    read = set(spec.read_schema.model_fields)
    for name in sorted(set(api) - read):
        found.append(f"{name}: to_api returns it, the read schema lacks it")
    for name in sorted(read - set(api)):
        found.append(f"{name}: in the read schema, not returned by to_api")
    for name, (_, nullable) in db.items():
        key = spec.api_names.get(name, name)
        if nullable and key in read and not _accepts_none(spec.read_schema, key):
            found.append(f"{key}: may be null in the database, not in the read schema")

    # what clients write must land in a column, or it would be dropped without a word
    writable = {spec.api_names.get(name, name) for name in spec.field_names}
    for schema in {spec.create_schema, spec.update_schema}:
        for name in sorted(set(schema.model_fields) - writable):
            found.append(f"{name}: {schema.__name__} takes it, the spec has no such field")

    # names the spec's other parts give its columns
    for qp in spec.query_params:
        if qp.op == "flag":
            continue
        if spec.field_type(qp.column) != qp.type:
            found.append(f"?{qp.name}: a {qp.type} filter on {qp.column} ({spec.field_type(qp.column)})")
    fields = set(spec.field_names)
    named = {
        "sorts": spec.sorts,
        "nullable_sorts": spec.nullable_sorts,
        "required": spec.required,
        "defaults": tuple(spec.defaults),
        "references": tuple(r.column for r in spec.references),
        "relations": tuple(fk for fk, _ in spec.relations.values()),
        "natural_key": (spec.natural_key.field,) if spec.natural_key else (),
        "api_names": tuple(spec.api_names),
    }
    for part, names in named.items():
        for name in names:
            if name not in fields and name not in SYSTEM_COLUMNS:
                found.append(f"{part}: {name} is not a column of {spec.table}")
    for name in spec.sorts:  # a keyset page over a nullable column would skip its nulls
        if db.get(name, ("", False))[1] and name not in spec.nullable_sorts:
            found.append(f"sorts: {name} may be null but is not among the nullable_sorts")
    return found


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
async def test_declarations_agree(spec: ResourceSpec, pool: asyncpg.Pool) -> None:
    assert disagreements(spec, await _db_columns(pool, spec.table)) == []


async def test_a_field_declared_in_one_place_only_is_caught(pool: asyncpg.Pool) -> None:
    """The check bites: take a field away from each place in turn (or add one) and it says which."""
    spec = REGISTRY["contacts"]
    db = await _db_columns(pool, spec.table)
    without_phone = tuple(f for f in spec.fields if f.name != "phone")

    missing_field = dataclasses.replace(spec, fields=without_phone)
    assert "phone: in the model only" in disagreements(missing_field, db)
    assert "phone: migrated, not in the spec" in disagreements(missing_field, db)
    assert any(p.startswith("phone: ContactCreate takes it") for p in disagreements(missing_field, db))

    not_migrated = {k: v for k, v in db.items() if k != "phone"}
    assert "phone: in the spec, not migrated" in disagreements(spec, not_migrated)

    fields = spec.read_schema.model_fields
    kept = {n: (f.annotation, f) for n, f in fields.items() if n != "phone"}
    read: type[BaseModel] = create_model("ContactWithoutPhone", **kept)  # type: ignore[call-overload]
    assert "phone: to_api returns it, the read schema lacks it" in disagreements(
        dataclasses.replace(spec, read_schema=read), db
    )

    wrong_type = tuple(dataclasses.replace(f, type="bigint") if f.name == "phone" else f for f in spec.fields)
    assert "phone: the spec says bigint, the database text" in disagreements(
        dataclasses.replace(spec, fields=wrong_type), db
    )

    unsorted_nulls = dataclasses.replace(spec, sorts=(*spec.sorts, "phone"))
    assert "sorts: phone may be null but is not among the nullable_sorts" in disagreements(unsorted_nulls, db)


async def _sample(api: httpx.AsyncClient, name: str) -> tuple[str, dict[str, Any]]:
    """(path, body) that creates one object of the resource; a new resource needs its line here."""
    if name == "ticket_comments":
        ticket = (await api.post("/v1/tickets", json={"subject": "Help"})).json()
        return f"/v1/tickets/{ticket['id']}/comments", {"body": "Hello"}
    bodies: dict[str, dict[str, Any]] = {
        "contacts": {"email": "a@example.com", "tags": ["x"]},
        "companies": {"name": "Acme", "domain": "acme.example"},
        "activities": {"type": "task", "subject": "Call back"},
        "tickets": {"subject": "Broken"},
        "deals": {"name": "Deal", "amount": "10.00", "currency": "EUR"},  # in the default pipeline
        "sla_policies": {"name": "Standard"},
        "custom_fields": {"object_type": "contact", "name": "shoe_size", "label": "Size", "type": "number"},
        "members": {"email": "Ann@Example.com", "name": "Ann"},
        "teams": {"name": "Sales"},
        "segments": {"name": "Leads", "object_type": "contact", "kind": "static"},
        "scoring_rules": {
            "name": "Leads",
            "points": 5,
            "condition": {"field": "tags", "op": "contains", "value": "x"},
        },
        "automations": {
            "name": "Tag leads",
            "trigger": {"type": "event", "event_type": "contact.created"},
            "actions": [{"type": "add_tags", "tags": ["lead"]}],
        },
    }
    assert name in bodies, f"give {name} a sample body in this test"
    return f"/v1/{REGISTRY[name].url_segment}", bodies[name]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
async def test_served_objects_match_their_rows(
    spec: ResourceSpec, api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    path, body = await _sample(api, spec.name)
    r = await api.post(path, json=body)
    assert r.status_code == 201, r.text
    served = r.json()
    assert set(served) == set(spec.read_schema.model_fields)
    spec.read_schema.model_validate(served)
    row = await pool.fetchrow(
        f"SELECT * FROM {spec.table} WHERE workspace_id = $1 AND id = $2",
        api.workspace_id,  # type: ignore[attr-defined]
        uuid.UUID(served["id"]),
    )
    assert row is not None
    assert jsonutil.loads(jsonutil.dumps(spec.to_api(dict(row)))) == served
    if spec.name in REGISTRY:  # comments are read through their ticket's list only
        got = await api.get(f"/v1/{spec.url_segment}/{served['id']}")
        assert got.status_code == 200 and got.json() == served
