"""The committed spec is the contract generated clients are built from: it must equal what the app serves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from crm_api.app import create_app
from crm_api.events.types import CATALOGUE

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
    *(f"members_{a}" for a in RESOURCE_ACTIONS),
    *(f"teams_{a}" for a in RESOURCE_ACTIONS),
    *(f"automations_{a}" for a in RESOURCE_ACTIONS),
    "automations_aggregate",
    "automations_list_runs",
    "automations_test",
    "members_upsert_by_email",
    "members_ownership",
    "members_reassign",
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
    "search_all",
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
    "browser_tokens_create",
    "events_list",
    "events_stream",
    "events_get",
    "event_types_list",
    "schemas_get",
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
    "reports_pipeline",
    "reports_forecast",
    "reports_win_rate",
    "reports_sales_cycle",
    "reports_service",
    "reports_customers",
    "reports_lead_conversion",
    "reports_attribution",
    *(f"{r}_aggregate" for r in ("contacts", "companies", "deals", "activities", "tickets", "sla_policies")),
    "members_aggregate",
    "teams_aggregate",
    "custom_fields_aggregate",
    "imports_create",
    "imports_upload_part",
    "imports_start",
    "imports_get",
    "imports_cancel",
    "imports_errors",
    "exports_create",
    "exports_get",
    "exports_file",
    *(f"segments_{a}" for a in RESOURCE_ACTIONS),
    "segments_aggregate",
    "segments_members",
    "segments_add_members",
    "segments_remove_members",
    "segments_history",
    *(f"{r}_segments" for r in ("contacts", "companies", "deals")),
    *(f"scoring_rules_{a}" for a in RESOURCE_ACTIONS),
    "scoring_rules_aggregate",
    "contacts_score",
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


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    found: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return _resolve(spec, found)


def _with_paths(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def _header_params(spec: dict[str, Any], op: dict[str, Any]) -> set[str]:
    params = [_resolve(spec, p) for p in op.get("parameters", [])]
    return {p["name"] for p in params if p["in"] == "header"}


def test_every_operation_lists_its_problem_responses() -> None:
    spec = json.loads(SPEC.read_text())
    assert "Problem" in spec["components"]["schemas"]
    for op in _operations(spec):
        if op.get("security") == []:  # the probes: no key, no parameters, nothing to refuse
            continue
        for status in ("400", "401", "403", "422", "429", "503"):
            response = op["responses"].get(status)
            assert response is not None, f"{op['operationId']} does not list {status}"
            response = _resolve(spec, response)
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, op["operationId"]
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], (op["operationId"], status)


def test_every_operation_is_described_for_a_reader() -> None:
    """A summary in words (not FastAPI's title-cased function name, not "Create a activity") and a
    description, on every operation."""
    spec = json.loads(SPEC.read_text())
    for op in _operations(spec):
        summary, description = op.get("summary", ""), op.get("description", "")
        words = summary.split()
        assert len(words) >= 2 and summary == summary.strip(), (op["operationId"], summary)
        assert not all(w[0].isupper() for w in words), (op["operationId"], summary)  # "List Keys"
        assert not re.search(r"\ba [aeio]|_", summary), (op["operationId"], summary)
        assert len(description) >= 60, (op["operationId"], description)


def test_writes_declare_their_headers_and_what_can_go_wrong() -> None:
    """Idempotency-Key on every write, If-Match where it is read (with 412 beside it), 404 wherever an id
    is in the path, and the headers of the answers: X-Request-ID and RateLimit on all, ETag where a
    versioned object comes back, Location on a create, Idempotent-Replayed where a replay can come."""
    spec = json.loads(SPEC.read_text())
    if_match = set()
    for path, method, op in _with_paths(spec):
        name, headers = op["operationId"], _header_params(spec, op)
        assert "X-Request-ID" in headers, name
        write = method != "get" and not name.endswith(("_search", "_duplicates", "_aggregate"))
        assert ("Idempotency-Key" in headers) == write, name
        if write:
            assert "409" in op["responses"], name
        if "If-Match" in headers:
            if_match.add(name)
            assert "412" in op["responses"], name
        if "{id}" in path:
            assert "404" in op["responses"], name
        for status, response in op["responses"].items():
            sent = set(_resolve(spec, response)["headers"])
            assert {"X-Request-ID", "RateLimit", "RateLimit-Policy"} <= sent, (name, status)
            assert ("Idempotent-Replayed" in sent) == (write and status.startswith("2")), (name, status)
    resources = (
        *("contacts", "companies", "deals", "activities", "tickets", "sla_policies", "custom_fields"),
        *("members", "teams", "segments", "scoring_rules", "automations"),
    )
    assert if_match == {
        *(f"{r}_{a}" for r in resources for a in ("update", "archive", "restore")),
        *(f"pipelines_{a}" for a in ("update", "archive", "restore")),
        *(f"pipelines_{a}" for a in ("add_stage", "update_stage", "remove_stage", "reorder_stages")),
        "webhooks_update",
        "webhooks_delete",
        "webhooks_rotate_secret",
    }
    versioned = {
        *(f"{r}_{a}" for r in resources for a in ("get", "create", "update", "archive", "restore")),
        *(f"{r}_upsert_by_external_id" for r in resources),
        "contacts_upsert_by_email",
        "companies_upsert_by_domain",
        *(f"{r}_upsert_by_custom_field" for r in ("contacts", "companies", "deals", "tickets")),
        *(op for op in EXPECTED if op.startswith("pipelines_") and op != "pipelines_list"),
        "webhooks_get",
        "webhooks_update",
        "webhooks_rotate_secret",
    }
    for _, _, op in _with_paths(spec):
        for status, response in op["responses"].items():
            if status.startswith("2") and op["operationId"] in versioned:
                assert "ETag" in response["headers"], (op["operationId"], status)
            if status == "201" and op["operationId"] not in (
                "api_keys_create",
                "tickets_create_comment",
                "orders_upsert",
            ):
                assert "Location" in response["headers"], op["operationId"]


def test_servers_and_auth_are_declared() -> None:
    spec = json.loads(SPEC.read_text())
    assert spec["servers"][0]["url"] == "/"
    assert spec["security"] == [{"bearer": []}]
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_enums_are_shared_components() -> None:
    """An enum is a component of its own that models refer to (nullable ones as anyOf [$ref, null]):
    generated clients get one type per enum, not one per model and field."""
    spec = json.loads(SPEC.read_text())
    schemas = spec["components"]["schemas"]
    inline: list[str] = []

    def walk(node: Any, pointer: str, top: bool) -> None:
        if isinstance(node, dict):
            if not top and len(node.get("enum", ())) > 1:
                inline.append(pointer)
            for key, value in node.items():
                walk(value, f"{pointer}/{key}", False)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{pointer}/{i}", False)

    for name, schema in schemas.items():
        walk(schema, name, True)
    assert inline == []
    assert schemas["LifecycleStage"]["enum"][:2] == ["subscriber", "lead"]
    stage = schemas["ContactUpdate"]["properties"]["lifecycle_stage"]
    assert stage["anyOf"] == [{"$ref": "#/components/schemas/LifecycleStage"}, {"type": "null"}]


def test_request_bodies_carry_no_defaults() -> None:
    """A TypeScript client (openapi-typescript, default flags) makes a property with a default required:
    request bodies say their defaults in words instead."""
    spec = json.loads(SPEC.read_text())
    schemas = spec["components"]["schemas"]
    for name in ("ContactCreate", "TicketCreate", "SearchRequest", "ContactBatchRequest", "Schedule"):
        for field, prop in schemas[name]["properties"].items():
            assert "default" not in prop, (name, field)
    tags = schemas["ContactCreate"]["properties"]["tags"]
    assert "Default: `[]`" in tags["description"]
    assert schemas["ContactCreate"].get("required", []) == []


def test_webhook_payloads_are_declared() -> None:
    """Every catalogued event type, with the Standard Webhooks headers, and no bearer key: the service
    signs what it sends."""
    spec = json.loads(SPEC.read_text())
    assert set(spec["webhooks"]) == {e.type for e in CATALOGUE}
    assert {"webhook.test", "deal.won", "ticket.sla_breached", "contact.erased"} <= set(spec["webhooks"])
    for event_type, entry in spec["webhooks"].items():
        post = entry["post"]
        assert post["security"] == [], event_type
        headers = {p["name"]: p for p in post["parameters"] if p["in"] == "header"}
        assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}, event_type
        assert all(h["required"] for h in headers.values())
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["type"] == {"const": event_type}


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


def test_report_parameters_are_typed() -> None:
    """The reports' parameters say what the server takes (schemathesis checks the server keeps to it)."""
    spec = json.loads(SPEC.read_text())
    forecast = {
        p["name"]: p["schema"]
        for p in spec["paths"]["/v1/reports/forecast"]["get"]["parameters"]
        if "name" in p
    }
    assert forecast["from"]["format"] == "date" and forecast["to"]["format"] == "date"
    assert forecast["pipeline_id"] == {"format": "uuid", "title": "Pipeline Id", "type": "string"}
    assert forecast["interval"]["enum"] == ["day", "week", "month", "quarter", "year"]
    assert forecast["group_by"]["enum"] == ["owner"]
    assert forecast["include_archived"]["type"] == "boolean"
    customers = {
        p["name"]: p["schema"]
        for p in spec["paths"]["/v1/reports/customers"]["get"]["parameters"]
        if "name" in p
    }
    assert (customers["churn_days"]["minimum"], customers["churn_days"]["maximum"]) == (1, 3650)
    assert customers["as_of"]["format"] == "date-time"
    deals = spec["components"]["schemas"]["DealsAggregateRequest"]["properties"]
    metric = deals["metrics"]["items"]["anyOf"][1]["$ref"].rsplit("/", 1)[1]
    number = spec["components"]["schemas"][metric]["properties"]["field"]
    assert spec["components"]["schemas"][number["$ref"].rsplit("/", 1)[1]]["enum"] == ["amount", "version"]
