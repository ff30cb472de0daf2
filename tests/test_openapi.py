"""The committed spec is the contract generated clients are built from: it must equal what the app serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from crm_api.app import create_app

SPEC = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
RESOURCE_ACTIONS = (
    "list",
    "get",
    "create",
    "update",
    "archive",
    "restore",
    "search",
    "batch",
    "upsert_by_external_id",
)
EXPECTED = {
    *(f"contacts_{a}" for a in RESOURCE_ACTIONS),
    *(f"companies_{a}" for a in RESOURCE_ACTIONS),
    *(f"activities_{a}" for a in RESOURCE_ACTIONS),
    *(f"tickets_{a}" for a in RESOURCE_ACTIONS),
    *(f"sla_policies_{a}" for a in RESOURCE_ACTIONS),
    *(f"custom_fields_{a}" for a in RESOURCE_ACTIONS),
    *(f"{r}_upsert_by_custom_field" for r in ("contacts", "companies", "deals", "tickets")),
    "tickets_list_comments",
    "tickets_create_comment",
    "contacts_upsert_by_email",
    "companies_upsert_by_domain",
    "companies_list_contacts",
    "contacts_duplicates",
    "companies_duplicates",
    "contacts_merge",
    "companies_merge",
    *(f"deals_{a}" for a in RESOURCE_ACTIONS),
    "deals_stage_history",
    "deals_list_line_items",
    "orders_upsert",
    "orders_batch",
    "contacts_timeline",
    "companies_timeline",
    "deals_timeline",
    "contacts_erase",
    *(f"{r}_history" for r in ("contacts", "companies", "deals", "tickets", "activities")),
    "pipelines_create",
    "pipelines_list",
    "pipelines_get",
    "pipelines_update",
    "pipelines_archive",
    "pipelines_restore",
    "pipelines_add_stage",
    "pipelines_update_stage",
    "pipelines_remove_stage",
    "pipelines_reorder_stages",
    "api_keys_list",
    "api_keys_create",
    "api_keys_revoke",
    "events_list",
    "events_get",
    "event_types_list",
    "webhooks_create",
    "webhooks_list",
    "webhooks_get",
    "webhooks_update",
    "webhooks_delete",
    "webhooks_rotate_secret",
    "webhooks_test",
    "webhooks_recover",
    "webhooks_list_deliveries",
    "webhook_deliveries_get",
    "webhook_deliveries_retry",
    "health_live",
    "health_ready",
}


def _operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in spec["paths"].values() for op in path.values()]


def test_committed_spec_equals_the_served_one() -> None:
    served = create_app(url="postgresql://unused").openapi()
    committed = json.loads(SPEC.read_text())
    assert committed == served, "openapi/openapi.json is stale: run scripts/openapi and commit the result"


async def test_spec_over_http_equals_the_committed_file(api: httpx.AsyncClient) -> None:
    served = (await api.get("/openapi.json")).json()
    assert served == json.loads(SPEC.read_text())


def test_operation_ids_are_the_stable_set() -> None:
    spec = json.loads(SPEC.read_text())
    ids = [op["operationId"] for op in _operations(spec)]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    assert set(ids) == EXPECTED


def test_every_operation_lists_its_problem_responses() -> None:
    spec = json.loads(SPEC.read_text())
    assert "Problem" in spec["components"]["schemas"]
    for op in _operations(spec):
        if op.get("security") == []:  # the probes: no key, no parameters, nothing to refuse
            continue
        for status in ("400", "401", "403", "422"):
            response = op["responses"].get(status)
            assert response is not None, f"{op['operationId']} does not list {status}"
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, op["operationId"]


def test_webhook_payloads_are_declared() -> None:
    spec = json.loads(SPEC.read_text())
    assert {"contact.created", "contact.updated", "company.archived"} <= set(spec["webhooks"])
    assert {"deal.stage_changed", "deal.won", "deal.lost", "pipeline.updated"} <= set(spec["webhooks"])


def test_no_schema_pins_a_type_beside_its_alternatives() -> None:
    """``{"type": "string", "anyOf": [{"type": "string"}, {"type": "null"}]}`` refuses null: a deal
    without an amount broke its own response schema (found by schemathesis' response conformance)."""
    spec = json.loads(SPEC.read_text())
    clashes: list[str] = []

    def walk(node: Any, pointer: str) -> None:
        if isinstance(node, dict):
            if "type" in node and "anyOf" in node:
                clashes.append(pointer)
            for key, value in node.items():
                walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{pointer}/{i}")

    walk(spec, "")
    assert clashes == []
    for schema, field in (("Deal", "amount"), ("Company", "annual_revenue")):
        types = {b.get("type") for b in spec["components"]["schemas"][schema]["properties"][field]["anyOf"]}
        assert types == {"string", "null"}
