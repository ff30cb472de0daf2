"""An order as a shop sends it, and the order as the API answers it."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, WithJsonSchema
from typing_extensions import TypeAliasType

from ..contacts.schemas import Phone
from ..emails import Email
from ..resources.schemas import Currency, Money, Problem, ShortText, Text, UtcDatetime, WriteModel

OrderStatus = TypeAliasType("OrderStatus", Literal["pending", "paid", "fulfilled", "refunded", "cancelled"])
MAX_LINE_ITEMS = 1000
MAX_BATCH = 500
ZERO = decimal.Decimal("0.00")
Source = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]+$")]


class Customer(WriteModel):
    email: Email
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    phone: str | None = Phone
    source: ShortText | None = Field(
        None, description="Where the customer was acquired; set on a contact that has no source yet"
    )
    source_detail: Text | None = Field(None, description="More about the source, such as a UTM campaign")


class OrderCompany(WriteModel):
    domain: str = Field(min_length=1, max_length=253)
    name: ShortText | None = Field(None, min_length=1, description="Used when the company is created")


class LineItemIn(WriteModel):
    sku: ShortText | None = None
    name: ShortText = Field(min_length=1)
    quantity: int = Field(ge=0, le=1_000_000)
    unit_price: Money
    discount: Money = ZERO
    tax: Money = ZERO


class Totals(WriteModel):
    subtotal: Money | None = None
    discount: Money | None = None
    tax: Money | None = None
    shipping: Money | None = None
    total: Money


class OrderIn(WriteModel):
    customer: Customer
    company: OrderCompany | None = None
    order_number: ShortText | None = None
    status: OrderStatus
    currency: Currency
    totals: Totals
    placed_at: UtcDatetime | None = None
    updated_at: UtcDatetime = Field(
        description="The shop's version clock: an order older than the one applied changes nothing"
    )
    line_items: list[LineItemIn] = Field([], max_length=MAX_LINE_ITEMS)


class OrderBatchItem(WriteModel):
    """One order of a batch: what ``PUT /v1/orders/{source}/{external_id}`` takes in its path and body."""

    source: Source
    external_id: ExternalId
    order: OrderIn


_ITEM_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["source", "external_id", "order"],
    "properties": {
        "source": {"type": "string", "maxLength": 64, "pattern": r"^[A-Za-z0-9_.:-]+$"},
        "external_id": {"type": "string", "maxLength": 255},
        "order": {"$ref": "#/components/schemas/OrderIn"},
    },
}


class OrderBatchRequest(WriteModel):
    # items are validated one by one (service.parse_item) so a bad item fails alone; the schema still
    # shows their shape
    items: Annotated[
        list[Annotated[dict[str, Any], WithJsonSchema(_ITEM_SCHEMA)]],
        Field(min_length=1, max_length=MAX_BATCH),
    ]


class LineItem(BaseModel):
    object: Literal["line_item"]
    id: uuid.UUID
    deal_id: uuid.UUID
    position: int
    sku: str | None
    name: str
    quantity: int
    unit_price: str
    discount: str
    tax: str
    created_at: dt.datetime


class LineItemList(BaseModel):
    object: Literal["list"]
    data: list[LineItem]
    has_more: bool
    next_cursor: str | None


class TotalsOut(BaseModel):
    subtotal: str | None
    discount: str | None
    tax: str | None
    shipping: str | None
    total: str


class Order(BaseModel):
    object: Literal["order"]
    source: str
    external_id: str
    order_number: str | None
    status: OrderStatus
    currency: str
    totals: TotalsOut
    placed_at: dt.datetime | None
    updated_at: dt.datetime = Field(description="The shop's version clock of the order as applied")
    contact_id: uuid.UUID
    company_id: uuid.UUID | None
    deal_id: uuid.UUID
    line_items: list[LineItem]
    created_at: dt.datetime
    """When the CRM first saw the order."""


class OrderBatchResult(BaseModel):
    status: int
    object: Order | None = None
    error: Problem | None = None


class OrderBatchResponse(BaseModel):
    object: Literal["batch"]
    results: list[OrderBatchResult]
