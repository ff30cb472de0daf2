"""Hooks for the schemathesis run of tests/test_schemathesis.py (``st`` imports this module through
``SCHEMATHESIS_HOOKS``).

Each exclusion below is narrow (an operation, or a status with the problem ``code`` and error path the API
answers) and says why it is not the API's fault. Everything else schemathesis complains about fails the
test.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import schemathesis

OWN_KEY_ID = os.environ["CRM_SCHEMATHESIS_KEY_ID"]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    # Revoking the key the run authenticates with is a fine request, but the rest of the run would be
    # 401s: that one request goes to an id no key has (a 404) instead.
    if (
        case.method.upper() == "DELETE"
        and case.operation.path == "/v1/api-keys/{id}"
        and str((case.path_parameters or {}).get("id")) == OWN_KEY_ID
    ):
        case.path_parameters["id"] = str(uuid.uuid4())


# Rules the OpenAPI document cannot state: a request its schemas allow may still break one, and the API then
# answers as docs/API.md says. Each is (status, problem code, error path or its prefix, words of the message),
# "" matching anything; a refusal is dropped only when every error it names matches a rule.
NOT_IN_THE_SCHEMA: list[tuple[int, str, str, str]] = [
    # If-Match naming another version than the object's: refused, as it must be
    (412, "precondition_failed", "", ""),
    # the same Idempotency-Key with another request: a key is the client's to keep unique
    (422, "idempotency_key_reused", "", ""),
    # Idempotency-Key: printable characters, of the header's bytes
    (400, "bad_request", "", "Idempotency-Key must be"),
    # a cursor is opaque: only one the API issued is a cursor
    (400, "invalid_cursor", "/cursor", ""),
    # field names: filters, custom field sorts and field history name fields of the object, custom fields
    # (which each workspace defines) included
    (422, "validation_error", "/filter", ""),
    (422, "validation_error", "/sort", ""),
    (422, "validation_error", "/query/field", ""),
    # event types come from the catalogue (GET /v1/event-types), with prefixes such as contact.*
    (422, "validation_error", "/type", "event type"),
    (422, "validation_error", "/event_types", ""),
    # a numeric filter's value is a decimal
    (422, "validation_error", "", "of type numeric"),
    # a key's expiry must be in the future
    (422, "validation_error", "/expires_at", "future"),
    # a webhook URL must resolve, to addresses the SSRF guard allows
    (422, "validation_error", "/url", ""),
    # by-custom-field upserts name a live unique custom field of the workspace, and a value of its type
    (422, "validation_error", "/path/name", ""),
    (422, "validation_error", "/path/value", ""),
    # a domain is a host name once normalised (IDNA), an email's domain one that can receive mail
    (422, "validation_error", "", "valid domain"),
    (422, "validation_error", "", "not a valid email"),
    # strings are trimmed before their length is checked (docs/API.md, Basics): " " is empty
    (422, "validation_error", "", "at least 1 character"),
    # API key scopes are the ones docs/API.md lists; merge's prefer names fields and records of the two
    (422, "validation_error", "/scopes", "unknown scope"),
    (422, "validation_error", "/prefer", ""),
    # a pipeline's stages: names unique in the pipeline, a reorder lists each once, positions for all or none
    (422, "validation_error", "", "already named"),
    (422, "validation_error", "", "every stage"),
    (422, "validation_error", "", "another stage"),
    # a ticket comment by the requester needs a ticket with one
    (422, "validation_error", "/author_type", ""),
    # the stateful phase's inferred links sometimes carry a value that is not an id into an {id}
    (422, "validation_error", "/path/id", "valid UUID"),
    # an upsert's body repeating the path's key with another value
    (422, "validation_error", "", "differs"),
    # references name live objects of the workspace
    (422, "validation_error", "", "no live"),
    (422, "validation_error", "", "no such"),
    # owners and assignees are active members; "me" names the key's member, and schema-generated keys act
    # for none (docs/API.md, Members and teams)
    (422, "validation_error", "", "no active member"),
    (422, "validation_error", "", "names nobody"),
    # rules across fields
    (422, "validation_error", "/currency", "required with an amount"),
    (422, "validation_error", "/schedule", "required when hours"),
    (422, "validation_error", "/schedule", "end must be after start"),
    (422, "validation_error", "/schedule", "must not overlap"),
    (422, "validation_error", "", "have it"),
    (422, "validation_error", "/ids", "ids or records"),
    # a scoring rule has a condition with points or an activity, exactly one (docs/API.md, Lead scoring)
    (422, "validation_error", "/activity", "not both"),
    (422, "validation_error", "/condition", "or an activity"),
    (422, "validation_error", "/points", "required with a condition"),
    (422, "validation_error", "/points", "activity rule's points"),
    # a custom field's options go with its type: enum fields need some, other types none
    (422, "validation_error", "/options", ""),
    (422, "validation_error", "/stages", "open stage"),
    # a timeline's kinds are the object type's (the detail lists them)
    (422, "validation_error", "/kind", ""),
    # a time zone is one of the IANA database's
    (422, "validation_error", "/time_zone", "IANA"),
    # an import's column targets, upsert key and an export's fields name fields the object has (the spec's
    # patterns allow every object's) and custom fields the workspace defines (unique ones, for a key)
    (422, "validation_error", "/mapping", "unknown field"),
    (422, "validation_error", "/upsert_key", "expected"),
    (422, "validation_error", "/upsert_key", "not a live unique custom field"),
    (422, "validation_error", "/fields", "unknown field"),
    # an import uploaded in parts starts once its parts run from 0 without a gap; one sent whole as multipart
    # sends its job part before its file part (OpenAPI cannot state the order of parts)
    (422, "validation_error", "/job", "comes before"),
    (422, "validation_error", "/job/file", "file part"),
    (422, "validation_error", "/parts", ""),
    # custom field values follow the workspace's definitions, which the run itself creates (required ones too)
    (422, "validation_error", "/custom_fields", ""),
    # an automation's filter is the filter grammar on its trigger's object, and its actions are judged against
    # that object type (set_fields as its PATCH) and name live members and teams (docs/API.md, Automations)
    (422, "validation_error", "/trigger/filter", ""),
    (422, "validation_error", "/actions", ""),
    # an upsert that creates: its body (a PATCH's) must also pass the create rules
    (422, "validation_error", "", "Field required"),
    # a report's period: from not after to, at most 1,000 buckets of the interval; tz as for time_zone
    (422, "validation_error", "/from", "must not be after to"),
    (422, "validation_error", "/interval", "buckets"),
    (422, "validation_error", "/tz", "IANA"),
    # an aggregate's bucket time zone, as above; and at most 10,000 groups, which the data decides
    (422, "validation_error", "/group_by", "IANA"),
    (422, "validation_error", "/group_by", "more than"),
    # a metric of money needs currency among its groups: amounts in different currencies are never added
    (422, "validation_error", "/metrics", 'add "currency" to group_by'),
]


def _problem(response: Any) -> tuple[int, str, list[tuple[str, str]]]:
    try:
        body = response.json()
    except ValueError:
        return response.status_code, "", []
    if not isinstance(body, dict):
        return response.status_code, "", []
    errors = [(str(e.get("path", "")), str(e.get("message", ""))) for e in body.get("errors") or []]
    return response.status_code, str(body.get("code", "")), errors or [("", str(body.get("detail", "")))]


def _not_in_the_schema(status: int, code: str, errors: list[tuple[str, str]]) -> bool:
    rules = [(path, words) for s, c, path, words in NOT_IN_THE_SCHEMA if s == status and c == code]

    def matched(path: str, message: str) -> bool:
        return any(
            (not rule or path == rule or path.startswith(rule + "/")) and words in message
            for rule, words in rules
        )

    return bool(rules) and all(matched(path, message) for path, message in errors)


def _an_item_refused(response: Any) -> bool:
    """A batch answers 200 with a result per item: a bad item fails alone (docs/API.md, Batches), beside
    the good ones, which are written."""
    try:
        body = response.json()
    except ValueError:
        return False
    results = body.get("results") if isinstance(body, dict) and body.get("object") == "batch" else None
    return bool(results) and any(400 <= int(r.get("status", 0)) < 500 for r in results)


def _left_out_by_fields(failure: Any, case: Any) -> bool:
    """``fields=`` asks for a subset of the object (docs/API.md, Sparse fields): the read schema lists every
    property as required, and the response leaves out, by the client's request, the ones not asked for."""
    asked = (case.query or {}).get("fields")  # an empty fields= asks for id and object alone
    if asked is None or list(getattr(failure, "schema_path", []))[-1:] != ["required"]:
        return False
    values = asked if isinstance(asked, list) else [asked]
    names = {name.strip() for value in values for name in str(value).split(",")}
    missing = re.match(r'^"([^"]+)" is a required property', str(getattr(failure, "_raw_message", "")))
    return missing is not None and missing.group(1) not in names


# Routes added by issue 14 whose OpenAPI parameters are looser than what the server takes (a stream's
# Last-Event-ID and a browser token's scopes follow rules the spec does not state yet). Tightening their spec
# is open work of that issue; until then a refusal there is not counted as rejecting valid data. Everything
# else is checked on them. (The reports' parameters, the aggregates' bodies, imports and exports are typed:
# they are checked in full.)
LOOSE_SPEC = ("/v1/events/stream", "/v1/browser-tokens")


def _loose_spec(case: Any) -> bool:
    path = str(case.operation.path)
    return path.startswith(LOOSE_SPEC)


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """False drops the failure."""
    if failure.code == "ST202" and _loose_spec(case) and response.status_code == 422:
        return False
    if failure.code == "ST108" and _left_out_by_fields(failure, case):
        return False
    if failure.code == "ST202":  # positive_data_acceptance: a request the schema allows was refused
        return not _not_in_the_schema(*_problem(response))
    if failure.code == "ST201":  # negative_data_rejection: a request the schema forbids was accepted
        # a body over the size limit (a batch of too many items) is refused by that limit before
        # validation, a 413, which is as much a refusal as a 422; a batch refuses a bad item in its 200
        return not (response.status_code == 413 or _an_item_refused(response))
    return True
