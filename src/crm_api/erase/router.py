"""``POST /v1/contacts/{id}/erase``.

(No ``from __future__ import annotations`` here: FastAPI reads the route's annotations at definition.)
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from ..auth import Principal, require
from ..deps import LockingConn
from ..http import context, json_response, problems
from ..idempotency import idempotent
from ..routing import Route
from . import service
from .schemas import Erasure

router = APIRouter(prefix="/v1/contacts", tags=["contacts"], route_class=Route)
Writer = Annotated[Principal, require("contacts:write")]


@router.post(
    "/{id}/erase",
    operation_id="contacts_erase",
    response_model=Erasure,
    responses=problems(404, 409, 422),
    summary="Erase a contact's personal data (GDPR), irreversibly",
    description=(
        "Clears the contact's personal fields, tags, custom fields, external ids and marketing consent "
        "(its source and time too), archives it and stamps `erased_at`; empties subject and body of "
        "activities linked to it alone and unlinks it from shared ones; empties the body of ticket "
        "comments it wrote as requester; nulls those fields in stored event payloads (which webhook "
        "deliveries are built from) and drops logged receiver responses to those events. Ids, links, "
        "deals and amounts stay. Emits `contact.erased` carrying only the id. One transaction. "
        "A contact already erased answers 409; a retry with the same Idempotency-Key replays the receipt."
    ),
)
@idempotent
async def erase(
    request: Request,
    oid: Annotated[uuid.UUID, Path(alias="id")],
    principal: Writer,
    conn: LockingConn,
) -> Response:
    receipt = await service.erase_contact(conn, context(request, principal), oid)
    return json_response(receipt)
