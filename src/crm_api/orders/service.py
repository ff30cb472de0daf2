"""An order becomes, in the request's one transaction: the contact (by email), the company (by domain), a
deal keyed by ``(source, external_id)`` in the external-id registry, the deal's line items, the stored order
(its clock and content hash) and the contact's lifetime value and order count.

The shared resource services write the contact, company and deal, so their events (``contact.created``,
``deal.won``, ...) are emitted exactly as for any other client. A replay, or an order older than the one
applied, writes nothing and so emits nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import asyncpg
from pydantic import ValidationError

from .. import jsonutil
from ..auth import Context
from ..companies.spec import COMPANIES, normalise_domain
from ..contacts.spec import CONTACTS, normalise_email
from ..contacts.totals import refresh_contacts
from ..deals.spec import DEALS
from ..errors import CRMError, FieldError, Unprocessable
from ..locks import key_lock, lock_keys
from ..resources import repository as res_repo
from ..resources import service
from . import repository as repo
from .schemas import MAX_BATCH, OrderBatchItem, OrderIn

_WON = ("paid", "fulfilled")
_LOST = ("refunded", "cancelled")


def body_hash(order: OrderIn) -> str:
    """The content of an order, its clock left out: the same order re-sent later is the same order."""
    body = order.model_dump(mode="json", exclude={"updated_at"})
    return hashlib.sha256(jsonutil.dumps(_sorted(body))).hexdigest()


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _domain(order: OrderIn) -> str | None:
    if order.company is None:
        return None
    try:
        return normalise_domain(order.company.domain)
    except Unprocessable:
        raise Unprocessable(
            "company.domain is not a valid domain", [FieldError("/company/domain", "not a valid domain name")]
        ) from None


def lock_keys_of(ctx: Context, source: str, external_id: str, order: OrderIn) -> list[int]:
    """Every advisory lock the order's writes take, so they can be taken up front in one sorted statement
    (a batch then cannot deadlock with another batch or with a single push)."""
    keys = [
        key_lock(ctx.workspace_id, "orders", source, external_id),
        key_lock(ctx.workspace_id, DEALS.name, "external", source, external_id),
        key_lock(ctx.workspace_id, CONTACTS.name, "email", normalise_email(order.customer.email)),
    ]
    domain = _domain(order)
    if domain is not None:
        keys.append(key_lock(ctx.workspace_id, COMPANIES.name, "domain", domain))
    return keys


def view(order: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "order",
        "source": order["source"],
        "external_id": order["external_id"],
        "order_number": order["order_number"],
        "status": order["status"],
        "currency": order["currency"],
        "totals": {k: order[k] for k in ("subtotal", "discount", "tax", "shipping", "total")},
        "placed_at": order["placed_at"],
        "updated_at": order["shop_updated_at"],
        "contact_id": order["contact_id"],
        "company_id": order["company_id"],
        "deal_id": order["deal_id"],
        "line_items": [line_item(i) for i in items],
        "created_at": order["created_at"],
    }


def line_item(row: dict[str, Any]) -> dict[str, Any]:
    return {"object": "line_item", **row}


async def upsert(
    conn: asyncpg.Connection,
    ctx: Context,
    source: str,
    external_id: str,
    order: OrderIn,
    touched: set[uuid.UUID] | None = None,
) -> tuple[int, dict[str, Any]]:
    """201 with the order when it is new, 200 when it was updated or was already as sent (or newer).

    The contacts whose aggregates the order changes are refreshed here, or, when ``touched`` is given (a
    batch), added to it for the caller to refresh once for all orders."""
    ws = ctx.workspace_id
    await lock_keys(conn, lock_keys_of(ctx, source, external_id, order))
    digest = body_hash(order)
    stored = await repo.fetch_order(conn, ws, source, external_id)
    if stored is not None and (order.updated_at < stored["shop_updated_at"] or digest == stored["body_hash"]):
        if order.updated_at > stored["shop_updated_at"]:
            await repo.touch_clock(conn, ws, source, external_id, order.updated_at)
            stored["shop_updated_at"] = order.updated_at
        return 200, view(stored, await repo.line_items(conn, ws, stored["deal_id"]))

    company = await _company(conn, ctx, order)
    contact = await _contact(conn, ctx, order, company)
    before, deal = await _deal(conn, ctx, source, external_id, order, contact, company, stored)
    at = service.now()
    items = await repo.replace_line_items(
        conn, ws, deal["id"], [i.model_dump() for i in order.line_items], at
    )
    inserted, saved = await repo.save_order(
        conn,
        ws,
        {
            "source": source,
            "external_id": external_id,
            "deal_id": deal["id"],
            "contact_id": contact["id"],
            "company_id": company["id"] if company else None,
            "order_number": order.order_number,
            "status": order.status,
            "currency": order.currency,
            **order.totals.model_dump(),
            "placed_at": order.placed_at,
            "shop_updated_at": order.updated_at,
            "body_hash": digest,
            "created_at": at,
            "updated_at": at,
        },
    )
    # the customer, and whoever the order or its deal named before (the shop's customer may change, a user
    # may have re-pointed the deal)
    affected = {contact["id"]} | {r["contact_id"] for r in (stored, before) if r and r["contact_id"]}
    if touched is None:
        await refresh_contacts(conn, ctx, affected)
    else:
        touched |= affected
    return (201 if inserted else 200), view(saved, items)


async def _company(conn: asyncpg.Connection, ctx: Context, order: OrderIn) -> dict[str, Any] | None:
    """The live company with the order's domain, else a new one. An existing company keeps its name: a
    shop's billing company name is no better than what the CRM's users curated."""
    domain = _domain(order)
    if domain is None or order.company is None:
        return None
    found = await res_repo.fetch_live_by_key(conn, COMPANIES, ctx.workspace_id, "domain", [domain])
    if found:
        return found[0]
    _, row = await service.upsert_by_key(conn, COMPANIES, ctx, domain, {"name": order.company.name or domain})
    return row


async def _contact(
    conn: asyncpg.Connection, ctx: Context, order: OrderIn, company: dict[str, Any] | None
) -> dict[str, Any]:
    customer = order.customer
    email = normalise_email(customer.email)
    payload: dict[str, Any] = {
        k: v for k, v in customer.model_dump(exclude={"email"}).items() if v is not None
    }
    if company is not None or "source" in payload or "source_detail" in payload:
        found = await res_repo.fetch_live_by_key(conn, CONTACTS, ctx.workspace_id, "email", [email])
        # link to the company only a contact without one (a contact is not moved between companies by
        # what a shop says); looked up first so a new contact is created linked, with one event
        if company is not None and (not found or found[0]["company_id"] is None):
            payload["company_id"] = company["id"]
        # the acquisition source is the first one known: a later order does not re-attribute the contact
        if found and found[0]["source"] is not None:
            payload.pop("source", None)
            payload.pop("source_detail", None)
    _, row = await service.upsert_by_key(conn, CONTACTS, ctx, email, payload)
    return row


async def _deal(
    conn: asyncpg.Connection,
    ctx: Context,
    source: str,
    external_id: str,
    order: OrderIn,
    contact: dict[str, Any],
    company: dict[str, Any] | None,
    stored: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The deal as it was (None when new) and as it is now."""
    current = await res_repo.fetch_one(conn, DEALS, ctx.workspace_id, stored["deal_id"]) if stored else None
    # an existing deal stays in its pipeline (a user may have moved it); a new one goes to the default
    pipeline_id = current["pipeline_id"] if current else None
    stages = await repo.stages(conn, ctx.workspace_id, pipeline_id)
    kind = "won" if order.status in _WON else "lost" if order.status in _LOST else "open"
    if current is not None and current["status"] == kind:
        stage_id = current["stage_id"]  # already in a stage of the right kind (perhaps one a user chose)
    else:
        stage_id = next((s["id"] for s in stages if s["kind"] == kind), None)
    if stage_id is None:
        raise Unprocessable(
            f"The deal pipeline has no {kind} stage for an order that is {order.status}",
            [FieldError("/status", f"no {kind} stage in the deal's pipeline")],
        )
    payload: dict[str, Any] = {
        "name": f"Order {order.order_number or external_id}",
        "source": source,
        "amount": order.totals.total,
        "currency": order.currency,
        "contact_id": contact["id"],
        "pipeline_id": stages[0]["pipeline_id"],
        "stage_id": stage_id,
        "lost_reason": order.status if kind == "lost" else None,
    }
    if company is not None:
        payload["company_id"] = company["id"]
    _, row = await service.upsert_by_external_id(conn, DEALS, ctx, source, external_id, payload)
    return current, row


def parse_item(item: Any, index: int) -> OrderBatchItem:
    try:
        return OrderBatchItem.model_validate(item)
    except ValidationError as exc:
        errors = [
            FieldError(f"/items/{index}" + "".join(f"/{p}" for p in e["loc"]), e["msg"])
            for e in exc.errors(include_url=False)
        ]
        raise Unprocessable("The item is not valid", errors) from None


def _at_item(exc: CRMError, index: int, under: str) -> CRMError:
    """Point the field paths of an order's error at the batch item's order."""
    exc.errors = [FieldError(f"/items/{index}{under}{e.path}", e.message) for e in exc.errors]
    return exc


async def batch(conn: asyncpg.Connection, ctx: Context, items: list[Any]) -> list[dict[str, Any]]:
    """Up to 500 orders, one result each. Every item runs in a savepoint of its own: simple and correct
    (a failing item rolls back alone), at the price of a few round trips per item rather than a fixed few
    statements for the whole batch. Every lock is taken up front, sorted, so batches cannot deadlock."""
    assert len(items) <= MAX_BATCH
    results: list[dict[str, Any] | None] = [None] * len(items)
    parsed: dict[int, OrderBatchItem] = {}
    locks: list[int] = []
    for i, item in enumerate(items):
        try:
            order = parse_item(item, i)
        except CRMError as exc:
            results[i] = _error(exc, ctx)
            continue
        try:
            locks += lock_keys_of(ctx, order.source, order.external_id, order.order)
        except CRMError as exc:
            results[i] = _error(_at_item(exc, i, "/order"), ctx)
            continue
        parsed[i] = order
    await lock_keys(conn, locks)
    touched: set[uuid.UUID] = set()
    for i, order in parsed.items():
        mine: set[uuid.UUID] = set()
        try:
            async with conn.transaction():
                status, obj = await upsert(conn, ctx, order.source, order.external_id, order.order, mine)
            results[i] = {"status": status, "object": obj}
            touched |= mine  # only once its savepoint held: a failed item touched nobody
        except CRMError as exc:
            results[i] = _error(_at_item(exc, i, "/order"), ctx)
    # one refresh for the batch: each contact gets one new version and one event, however many orders
    await refresh_contacts(conn, ctx, touched)
    return [r for r in results if r is not None]


def _error(exc: CRMError, ctx: Context) -> dict[str, Any]:
    return {"status": exc.status, "error": exc.body(ctx.request_id or "")}


__all__ = ["batch", "body_hash", "upsert", "view"]
