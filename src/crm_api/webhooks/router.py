"""``/v1/webhooks`` and ``/v1/webhook-deliveries``."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from ..auth import Principal, require
from ..deps import IfMatch, LockingConn, read_pool
from ..http import (
    NOT_MODIFIED,
    context,
    if_none_match,
    json_response,
    not_modified,
    problems,
    secret_response,
    success,
    versioned_response,
)
from ..idempotency import idempotent
from ..pagination import Sort, cursor_by, decode_cursor, keyset_page
from ..routing import Route
from . import netguard, service
from . import repository as repo
from .schemas import (
    Delivery,
    DeliveryList,
    DeliveryStatus,
    Endpoint,
    EndpointCreate,
    EndpointList,
    EndpointSaved,
    EndpointUpdate,
    EndpointWithSecret,
    RecoverRequest,
    RecoverResult,
)

router = APIRouter(tags=["webhooks"], route_class=Route)
Reader = Annotated[Principal, require("webhooks:read")]
Writer = Annotated[Principal, require("webhooks:write")]
EndpointId = Annotated[uuid.UUID, Path(alias="id")]
Limit = Annotated[int, Query(ge=1, le=200)]
_ENDPOINT_SORT = Sort("created_at", False)
_DELIVERY_SORT = Sort("created_at", True)


def _allow(request: Request) -> list[netguard.Network]:
    return netguard.parse_allow(request.app.state.settings.webhook_allow_cidrs)


@router.post(
    "/v1/webhooks",
    status_code=201,
    operation_id="webhooks_create",
    response_model=EndpointWithSecret,
    responses={**problems(409, 422), **success(201, "Location")},
    summary="Subscribe an endpoint to event types",
    description="`url` (http or https) must resolve to public addresses only (422 at `/url` otherwise; "
    "`CRM_WEBHOOK_ALLOW_CIDRS` opens chosen private networks); `event_types` takes exact types, "
    "`<object>.*` and `*` (a type that does not exist is a 422). `ordering: per_object` sends an object's "
    "events one at a time, in order. Answers 201 with `Location` and the signing `secret` (`whsec_...`), "
    "shown now and on rotation only. Deliveries are signed per Standard Webhooks.",
)
@idempotent
async def create(request: Request, body: EndpointCreate, principal: Writer, conn: LockingConn) -> Response:
    row, warnings = await service.create(
        conn, context(request, principal), body.model_dump(), _allow(request), request.app.state.keyring
    )
    return secret_response(
        repo.endpoint_api(row, with_secret=True, warnings=warnings),
        201,
        {"Location": f"/v1/webhooks/{row['id']}"},
    )


@router.get(
    "/v1/webhooks",
    operation_id="webhooks_list",
    response_model=EndpointList,
    responses=problems(422),
    summary="List webhook endpoints",
    description="The workspace's endpoints, oldest first, without their secrets. Pass `next_cursor` back "
    "as `cursor` until `has_more` is false.",
)
async def list_(
    principal: Reader, request: Request, limit: Limit = 50, cursor: str | None = None
) -> Response:
    conn = read_pool(request)
    after = decode_cursor(cursor, _ENDPOINT_SORT) if cursor else None
    rows = await repo.list_endpoints(conn, principal.workspace_id, after, limit)
    return json_response(keyset_page(rows, limit, cursor_by(_ENDPOINT_SORT), repo.endpoint_api))


@router.get(
    "/v1/webhooks/{id}",
    operation_id="webhooks_get",
    response_model=Endpoint,
    responses={**problems(404, 422), **success(200, "ETag"), **NOT_MODIFIED},
    openapi_extra={"parameters": [if_none_match()]},
    summary="Get a webhook endpoint",
    description="The endpoint without its secret, with `status` and, when disabled, `disabled_reason`. "
    "Its version (the `ETag`) moves with every change, the dispatcher's too: disabling it on a 410 or "
    "after 5 days of failures is a new version.",
)
async def get(request: Request, eid: EndpointId, principal: Reader) -> Response:
    conn = read_pool(request)
    row = await service.get(conn, context(request, principal), eid)
    return not_modified(request, row["version"]) or versioned_response(repo.endpoint_api(row), row["version"])


@router.patch(
    "/v1/webhooks/{id}",
    operation_id="webhooks_update",
    response_model=EndpointSaved,
    responses={**problems(404, 409, 412, 422), **success(200, "ETag")},
    summary="Change a webhook endpoint, or disable or re-enable it",
    description="Changes `url`, `event_types`, `description`, `ordering` or `status`. `status: disabled` "
    "stops deliveries (new events are not queued for it); `status: enabled` clears `disabled_reason` and "
    "sends every delivery held while it was disabled for failing. A new `url` is checked like on create. "
    "With `If-Match` (the endpoint's `ETag`) it applies only if the endpoint is still at that version "
    "(412 otherwise): a disable by the dispatcher is a new version too.",
)
@idempotent
async def update(
    request: Request,
    eid: EndpointId,
    body: EndpointUpdate,
    principal: Writer,
    conn: LockingConn,
    version: IfMatch,
) -> Response:
    changes = body.model_dump(exclude_unset=True)
    row, warnings = await service.update(
        conn, context(request, principal), eid, changes, _allow(request), version
    )
    return versioned_response(repo.endpoint_api(row, warnings=warnings), row["version"])


@router.delete(
    "/v1/webhooks/{id}",
    operation_id="webhooks_delete",
    response_model=Endpoint,
    responses=problems(404, 409, 412, 422),
    summary="Delete a webhook endpoint",
    description="Deletes the endpoint and its deliveries for good, and answers with the endpoint as it "
    "was. Events stay in the feed (`GET /v1/events`). With `If-Match` it applies only if the endpoint is "
    "still at that version (412 otherwise).",
)
@idempotent
async def delete(
    request: Request, eid: EndpointId, principal: Writer, conn: LockingConn, version: IfMatch
) -> Response:
    row = await service.delete(conn, context(request, principal), eid, version)
    return json_response(repo.endpoint_api(row))


@router.post(
    "/v1/webhooks/{id}/rotate-secret",
    operation_id="webhooks_rotate_secret",
    response_model=EndpointWithSecret,
    responses={**problems(404, 409, 412, 422), **success(200, "ETag")},
    summary="Rotate a webhook endpoint's signing secret",
    description="Answers with the new `secret`. For 24 hours the old secret signs too: `webhook-signature` "
    "then holds two signatures, so a receiver holding either secret verifies while it switches. A rotation "
    "is a new version; with `If-Match` it applies only if the endpoint is still at that version (412 "
    "otherwise).",
)
@idempotent
async def rotate_secret(
    request: Request, eid: EndpointId, principal: Writer, conn: LockingConn, version: IfMatch
) -> Response:
    keyring = request.app.state.keyring
    row = await service.rotate_secret(conn, context(request, principal), eid, keyring, version)
    obj = repo.endpoint_api(row, with_secret=True, warnings=[])
    return secret_response(obj, headers={"ETag": f'"{row["version"]}"'})


@router.post(
    "/v1/webhooks/{id}/test",
    status_code=202,
    operation_id="webhooks_test",
    response_model=Delivery,
    responses=problems(404, 409, 422),
    summary="Send a test event to a webhook endpoint",
    description="Writes a `webhook.test` event delivered to this endpoint only, and answers 202 with its "
    "delivery; follow it with `GET /v1/webhook-deliveries/{id}`.",
)
@idempotent
async def test(request: Request, eid: EndpointId, principal: Writer, conn: LockingConn) -> Response:
    row = await service.send_test(conn, context(request, principal), eid)
    return json_response(repo.delivery_api(row), 202)


@router.post(
    "/v1/webhooks/{id}/recover",
    status_code=202,
    operation_id="webhooks_recover",
    response_model=RecoverResult,
    responses=problems(404, 409, 422),
    summary="Retry a webhook endpoint's failed deliveries since a time",
    description="Every failed delivery to this endpoint created since `since` is due again now; answers "
    "202 with how many were requeued. For an endpoint back up after an outage.",
)
@idempotent
async def recover(
    request: Request, eid: EndpointId, body: RecoverRequest, principal: Writer, conn: LockingConn
) -> Response:
    count = await service.recover(conn, context(request, principal), eid, body.since)
    return json_response({"object": "recovery", "requeued": count}, 202)


@router.get(
    "/v1/webhooks/{id}/deliveries",
    operation_id="webhooks_list_deliveries",
    response_model=DeliveryList,
    responses=problems(404, 422),
    summary="List a webhook endpoint's deliveries",
    description="Newest first, optionally only those with a `status` (pending, succeeded, failed): the "
    "event, attempts made, the last status code and error, and when the next attempt is due. Pass "
    "`next_cursor` back as `cursor` until `has_more` is false.",
)
async def list_deliveries(
    request: Request,
    eid: EndpointId,
    principal: Reader,
    limit: Limit = 50,
    cursor: str | None = None,
    status: DeliveryStatus | None = None,
) -> Response:
    conn = read_pool(request)
    await service.get(conn, context(request, principal), eid)
    after = decode_cursor(cursor, _DELIVERY_SORT) if cursor else None
    rows = await repo.list_deliveries(conn, principal.workspace_id, eid, status, after, limit)
    return json_response(keyset_page(rows, limit, cursor_by(_DELIVERY_SORT), repo.delivery_api))


@router.get(
    "/v1/webhook-deliveries/{id}",
    operation_id="webhook_deliveries_get",
    response_model=Delivery,
    responses=problems(404, 422),
    summary="Get a webhook delivery with its attempt log",
    description="The delivery and `attempt_log`: each attempt's time, status code, latency, error and the "
    "first 4096 bytes of the answer.",
)
async def get_delivery(request: Request, did: EndpointId, principal: Reader) -> Response:
    conn = read_pool(request)
    row = await service.get_delivery(conn, context(request, principal), did)
    return json_response(repo.delivery_api(row))


@router.post(
    "/v1/webhook-deliveries/{id}/retry",
    status_code=202,
    operation_id="webhook_deliveries_retry",
    response_model=Delivery,
    responses=problems(404, 409, 422),
    summary="Retry a webhook delivery now",
    description="Makes the delivery due now, whatever its status, and answers 202 with it. The attempt "
    "count carries on, so a delivery whose retries were used up gets one more attempt.",
)
@idempotent
async def retry(request: Request, did: EndpointId, principal: Writer, conn: LockingConn) -> Response:
    return json_response(repo.delivery_api(await service.retry(conn, context(request, principal), did)), 202)
