"""``GET /v1/contacts/{id}/score``: a contact's lead score and the rules that make it.

(No ``from __future__ import annotations`` here: FastAPI reads the closures' annotations at definition.)
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from ..auth import Principal, require
from ..contacts.spec import CONTACTS
from ..deps import read_pool
from ..http import context, json_response, problems
from ..resources import service
from ..routing import Route
from . import repository as repo
from .schemas import ContactScore

router = APIRouter(prefix="/v1/contacts", tags=["contacts"], route_class=Route)
Reader = Annotated[Principal, require("contacts:read")]


@router.get(
    "/{id}/score",
    operation_id="contacts_score",
    response_model=ContactScore,
    responses=problems(404, 422),
    summary="Explain a contact's lead score",
    description="The score and each live scoring rule that gives the contact points, most points first. "
    "Kept by the workers within seconds of a change; the score is the sum of the contributions.",
)
async def contact_score(
    request: Request, oid: Annotated[uuid.UUID, Path(alias="id")], principal: Reader
) -> Response:
    conn = read_pool(request)
    ctx = context(request, principal)
    contact = await service.get(conn, CONTACTS, ctx, oid)
    rows = await repo.contributions(conn, ctx.workspace_id, oid)
    return json_response(
        {"object": "contact_score", "contact_id": oid, "score": contact["score"], "contributions": rows}
    )
