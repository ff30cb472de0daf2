"""The reports and the aggregates are in openapi/openapi.json with typed responses: each 200 is a named
schema (and a CSV form for the reports), and what the server answers on data with something in every
field validates against the committed schema, with no field the schema does not declare."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
from clients import MakeClient
from test_reports_isolated import REPORTS, RESOURCES, _fill

SPEC = json.loads((Path(__file__).parents[2] / "openapi" / "openapi.json").read_text())


def _closed(node: Any) -> Any:
    """The schema with every object that lists its properties closed to others."""
    if isinstance(node, dict):
        out = {k: _closed(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


COMPONENTS = _closed(copy.deepcopy(SPEC["components"]))


def _schema(path: str, method: str) -> dict[str, Any]:
    content = SPEC["paths"][path][method]["responses"]["200"]["content"]
    ref = content["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[1]
    declared = SPEC["components"]["schemas"][name]
    assert declared["type"] == "object" and declared["properties"] and declared["required"], name
    return {"$ref": ref, "components": COMPONENTS}


def test_every_report_and_aggregate_declares_a_typed_answer() -> None:
    reports = [p for p in SPEC["paths"] if p.startswith("/v1/reports/")]
    assert sorted(reports) == sorted(f"/v1/reports/{r}" for r in {r for r, _ in REPORTS})
    for path in reports:
        _schema(path, "get")
        assert SPEC["paths"][path]["get"]["responses"]["200"]["content"]["text/csv"]["schema"] == {
            "type": "string"
        }
    aggregates = [p for p in SPEC["paths"] if p.endswith("/aggregate")]
    assert sorted(aggregates) == sorted(f"/v1/{r}/aggregate" for r in RESOURCES)
    for path in aggregates:
        _schema(path, "post")


async def test_answers_validate_against_the_committed_schemas(
    make_client: MakeClient, pool: asyncpg.Pool
) -> None:
    api = await make_client()
    await _fill(api, pool)
    for report, query in REPORTS:
        for archived in ("false", "true"):
            answer = await api.get(f"/v1/reports/{report}", params={**query, "include_archived": archived})
            assert answer.status_code == 200, answer.text
            jsonschema.validate(answer.json(), _schema(f"/v1/reports/{report}", "get"))
    for resource in RESOURCES:
        answer = await api.post(
            f"/v1/{resource}/aggregate",
            json={"group_by": ["created_at"], "metrics": [{"op": "count"}]},
        )
        assert answer.status_code == 200, answer.text
        jsonschema.validate(answer.json(), _schema(f"/v1/{resource}/aggregate", "post"))
