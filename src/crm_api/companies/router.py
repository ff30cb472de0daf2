"""Routes companies have beyond the shared ones."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from ..auth import Principal, require
from ..contacts.schemas import Contact
from ..contacts.spec import CONTACTS
from ..deps import read_pool
from ..http import context, json_response, problems
from ..resources import query, service
from ..resources.router import list_parameters
from ..resources.schemas import list_model
from ..routing import Route
from .spec import COMPANIES

router = APIRouter(prefix="/v1/companies", tags=["companies"], route_class=Route)
Reader = Annotated[Principal, require("contacts:read")]


@router.get(
    "/{id}/contacts",
    operation_id="companies_list_contacts",
    response_model=list_model(Contact),
    responses=problems(404, 422),
    openapi_extra=list_parameters(CONTACTS),
    summary="List a company's contacts",
    description="The contacts whose `company_id` is this company, with the filters, sorts and pages of "
    "the contact list. Needs `contacts:read`.",
)
async def list_contacts(
    request: Request, oid: Annotated[uuid.UUID, Path(alias="id")], principal: Reader
) -> Response:
    conn = read_pool(request)
    ctx = context(request, principal)
    await service.get(conn, COMPANIES, ctx, oid)
    page = await query.list_page(conn, CONTACTS, ctx, request.query_params, extra={"company_id": oid})
    return json_response(page)
