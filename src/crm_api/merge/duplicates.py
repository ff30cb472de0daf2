"""The duplicate finder: one query per criterion for all inputs at once (inputs travel as arrays).

Criteria and weights (a match's score is its strongest reason's):
- contacts: same normalised email (1.0); same phone digits (0.9); same first and last name, case-blind, at
  the same company (0.85); fuzzy full name, pg_trgm similarity >= threshold (0.8 x similarity)
- companies: same normalised domain (1.0); fuzzy name (0.8 x similarity)

Phones compare as E.164-like digit strings: every non-digit dropped, so ``+1 (555) 010-9999`` and
``1.555.010.9999`` match. No country inference: ``555 010 9999`` does not match ``+1 555 010 9999``.
Fewer than 7 digits is no phone at all.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import REAL, ColumnElement, Select, Text, and_, cast, column, func, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.sql.selectable import NamedFromClause, TableValuedAlias
from sqlalchemy.types import TypeEngine

from .. import sql
from ..auth import Context
from ..companies.spec import normalise_domain
from ..contacts.spec import normalise_email
from ..errors import FieldError, NotFound, Unprocessable
from ..models import crm
from ..resources import repository as repo
from ..resources.spec import ResourceSpec

WEIGHTS = {"email": 1.0, "domain": 1.0, "phone": 0.9, "name_at_company": 0.85}
FUZZY_WEIGHT = 0.8


def phone_key(phone: str | None) -> str | None:
    digits = re.sub(r"[^0-9]", "", phone or "")
    return digits if len(digits) >= 7 else None


def e164(phone: str | None) -> str | None:
    """The normalised form the finder compares, as documented: digits with a leading +."""
    key = phone_key(phone)
    return f"+{key}" if key else None


def _blank(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value or None


def contact_name_key(first: str | None, last: str | None) -> str | None:
    # the same text models.crm.contact_name_key computes in SQL
    return _blank(f"{first or ''} {last or ''}")


@dataclass
class _Found:
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    similarity: float | None = None

    def add(self, reason: str, score: float, similarity: float | None = None) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)
        self.score = max(self.score, round(score, 4))
        if similarity is not None:
            self.similarity = round(similarity, 4)


Hits = list[dict[uuid.UUID, _Found]]

_Condition = Callable[[NamedFromClause, TableValuedAlias], ColumnElement[bool]]


def _inputs(**arrays: TypeEngine[Any]) -> TableValuedAlias:
    """``unnest($a::t[], ...) WITH ORDINALITY AS q(a, ..., i)``: the inputs, one row each, ``i`` their
    1-based position."""
    fn = func.unnest(*(sql.param(name, ARRAY(t)) for name, t in arrays.items()))
    cols = [column(name, t) for name, t in arrays.items()]
    return fn.table_valued(*cols, with_ordinality="i").render_derived(name="q")


def _live(c: NamedFromClause) -> ColumnElement[bool]:
    return and_(c.c.workspace_id == sql.param("ws"), c.c.archived_at.is_(None))


def _exact_stmt(table: str, condition: _Condition, **arrays: TypeEngine[Any]) -> Select[Any]:
    """(q.i, c.id) for each live row ``c`` that ``condition`` pairs with an input ``q``."""
    c = sql.table(table).alias("c")
    q = _inputs(**arrays)
    return select(q.c.i, c.c.id).select_from(q.join(c, and_(_live(c), condition(c, q))))


def _fuzzy_stmt(table: str, key: Callable[[NamedFromClause], ColumnElement[str]]) -> Select[Any]:
    """(q.i, c.id, s) for each live row whose name key is similar to an input name, ``s`` the similarity.

    ``%`` (pg_trgm's default 0.3 threshold, at most ours) is what the trigram index answers; the
    similarity() filter then applies the caller's threshold to those few candidates."""
    c = sql.table(table).alias("c")
    q = _inputs(name=Text())
    similarity = func.similarity(key(c), q.c.name, type_=REAL)
    return (
        select(q.c.i, c.c.id, similarity.label("s"))
        .select_from(q.join(c, and_(_live(c), key(c).op("%")(q.c.name))))
        # real against real, as before: the caller's threshold rounded as similarity() rounds
        .where(similarity >= cast(sql.param("threshold"), REAL))
    )


_EMAIL = sql.Query(lambda: _exact_stmt("contacts", lambda c, q: c.c.email == q.c.email, email=Text()))
# ix_contacts_phone_digits
_PHONE = sql.Query(
    lambda: _exact_stmt("contacts", lambda c, q: crm.phone_digits(c.c.phone) == q.c.phone, phone=Text())
)
_NAME_AT_COMPANY = sql.Query(
    lambda: _exact_stmt(
        "contacts",
        lambda c, q: and_(
            c.c.company_id == q.c.company_id,
            func.lower(c.c.first_name) == q.c.first_name,
            func.lower(c.c.last_name) == q.c.last_name,
        ),
        first_name=Text(),
        last_name=Text(),
        company_id=UUID(),
    )
)
_DOMAIN = sql.Query(lambda: _exact_stmt("companies", lambda c, q: c.c.domain == q.c.domain, domain=Text()))
# ix_contacts_name_trgm, ix_companies_name_trgm
_FUZZY_CONTACTS = sql.Query(
    lambda: _fuzzy_stmt("contacts", lambda c: crm.contact_name_key(c.c.first_name, c.c.last_name))
)
_FUZZY_COMPANIES = sql.Query(lambda: _fuzzy_stmt("companies", lambda c: crm.company_name_key(c.c.name)))


async def _exact(
    conn: asyncpg.Connection | asyncpg.Pool,
    ws: uuid.UUID,
    query: sql.Query,
    reason: str,
    hits: Hits,
    **arrays: list[Any],
) -> None:
    """Run one exact criterion for the inputs that have every value it compares."""
    if not any(all(v is not None for v in values) for values in zip(*arrays.values(), strict=True)):
        return
    for r in await query.fetch(conn, ws=ws, **arrays):
        hits[r["i"] - 1].setdefault(r["id"], _Found()).add(reason, WEIGHTS[reason])


async def _fuzzy(
    conn: asyncpg.Connection | asyncpg.Pool,
    ws: uuid.UUID,
    query: sql.Query,
    names: list[str | None],
    threshold: float,
    hits: Hits,
) -> None:
    if not any(names):
        return
    for r in await query.fetch(conn, ws=ws, name=names, threshold=threshold):
        hits[r["i"] - 1].setdefault(r["id"], _Found()).add("fuzzy_name", FUZZY_WEIGHT * r["s"], r["s"])


async def find(
    conn: asyncpg.Connection | asyncpg.Pool,
    spec: ResourceSpec,
    ctx: Context,
    ids: list[uuid.UUID],
    records: list[dict[str, Any]],
    threshold: float,
    limit: int,
) -> list[dict[str, Any]]:
    if not ids and not records:
        raise Unprocessable(
            "Give ids or records to find duplicates of", [FieldError("/ids", "ids or records required")]
        )
    ids = list(dict.fromkeys(ids))
    rows = {r["id"]: r for r in await repo.fetch_by_ids(conn, spec, ctx.workspace_id, ids)} if ids else {}
    missing = [n for n, oid in enumerate(ids) if oid not in rows]
    if missing:
        raise NotFound(
            f"No {spec.object} with id {ids[missing[0]]}",
            [FieldError(f"/ids/{n}", f"no such {spec.object}") for n in missing],
        )
    inputs: list[tuple[str, uuid.UUID | None, dict[str, Any]]] = [
        (f"/ids/{n}", oid, rows[oid]) for n, oid in enumerate(ids)
    ]
    inputs += [(f"/records/{n}", None, rec) for n, rec in enumerate(records)]
    hits: Hits = [{} for _ in inputs]
    ws = ctx.workspace_id
    if spec.name == "contacts":
        await _contact_criteria(conn, ws, [r for _, _, r in inputs], threshold, hits)
    else:
        await _company_criteria(conn, ws, inputs, threshold, hits)
    wanted = {mid for n, (_, own, _) in enumerate(inputs) for mid in hits[n] if mid != own}
    objects = {r["id"]: r for r in await repo.fetch_by_ids(conn, spec, ws, list(wanted))} if wanted else {}
    out = []
    for n, (pointer, own, _) in enumerate(inputs):
        found = sorted(
            ((mid, f) for mid, f in hits[n].items() if mid != own and mid in objects),
            key=lambda p: (-p[1].score, str(p[0])),
        )[:limit]
        matches = [
            {
                "id": mid,
                "score": f.score,
                "reasons": f.reasons,
                "similarity": f.similarity,
                "object": spec.to_api(objects[mid]),
            }
            for mid, f in found
        ]
        out.append({"input": pointer, "id": own, "matches": matches})
    return out


async def _contact_criteria(
    conn: asyncpg.Connection | asyncpg.Pool,
    ws: uuid.UUID,
    recs: list[dict[str, Any]],
    threshold: float,
    hits: Hits,
) -> None:
    emails = [normalise_email(r["email"]) if r.get("email") else None for r in recs]
    await _exact(conn, ws, _EMAIL, "email", hits, email=emails)
    phones = [phone_key(r.get("phone")) for r in recs]
    await _exact(conn, ws, _PHONE, "phone", hits, phone=phones)
    await _exact(
        conn,
        ws,
        _NAME_AT_COMPANY,
        "name_at_company",
        hits,
        first_name=[_blank(r.get("first_name")) for r in recs],
        last_name=[_blank(r.get("last_name")) for r in recs],
        company_id=[r.get("company_id") for r in recs],
    )
    names = [contact_name_key(r.get("first_name"), r.get("last_name")) for r in recs]
    await _fuzzy(conn, ws, _FUZZY_CONTACTS, names, threshold, hits)


async def _company_criteria(
    conn: asyncpg.Connection | asyncpg.Pool,
    ws: uuid.UUID,
    inputs: list[tuple[str, uuid.UUID | None, dict[str, Any]]],
    threshold: float,
    hits: Hits,
) -> None:
    domains: list[str | None] = []
    for pointer, _, rec in inputs:
        try:
            domains.append(normalise_domain(rec["domain"]) if rec.get("domain") else None)
        except Unprocessable:
            raise Unprocessable(
                "Not a valid domain name", [FieldError(f"{pointer}/domain", "not a valid domain name")]
            ) from None
    await _exact(conn, ws, _DOMAIN, "domain", hits, domain=domains)
    names = [_blank(rec.get("name")) for _, _, rec in inputs]
    await _fuzzy(conn, ws, _FUZZY_COMPANIES, names, threshold, hits)
