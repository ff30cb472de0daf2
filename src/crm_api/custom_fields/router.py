"""Routes of custom fields on the resources that carry them.

(No ``from __future__ import annotations``: FastAPI reads the closures' annotations at definition.)
"""

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request, Response

from ..auth import Principal, require
from ..deps import LockingConn
from ..http import context, problems, success
from ..idempotency import idempotent
from ..resources import docs
from ..resources.router import object_response
from ..resources.spec import ResourceSpec
from ..routing import Route
from . import upsert
from .spec import NAME


def upsert_router(spec: ResourceSpec) -> APIRouter:
    """``PUT /v1/<resource>/by-custom-field/{name}/{value}``"""
    Update, Read = spec.update_schema, spec.read_schema
    Writer = Annotated[Principal, require(f"{spec.name}:write")]
    router = APIRouter(prefix=f"/v1/{spec.url_segment}", tags=[spec.name], route_class=Route)

    @router.put(
        "/by-custom-field/{name}/{value}",
        operation_id=f"{spec.name}_upsert_by_custom_field",
        response_model=Read,
        responses={
            **problems(409, 422),
            **success(200, "ETag"),
            **success(201, "ETag", "Location", model=Read, description="Created"),
        },
        **docs.upsert_by_custom_field_doc(spec).route(),
    )
    @idempotent
    async def upsert_by_custom_field(
        request: Request,
        name: Annotated[str, Path(pattern=NAME)],
        value: Annotated[str, Path(max_length=320, pattern=r"^[^\x00]+$")],
        # a per-resource model held in a variable: FastAPI reads it at runtime, mypy cannot
        body: Annotated[Update, Body()],  # type: ignore[valid-type]
        principal: Writer,
        conn: LockingConn,
    ) -> Response:
        status, row = await upsert.upsert(
            conn,
            spec,
            context(request, principal),
            name,
            value,
            body.model_dump(exclude_unset=True),  # type: ignore[attr-defined]
        )
        return object_response(spec, row, status)

    return router
