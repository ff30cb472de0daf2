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
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ..auth import Context
from ..companies.spec import normalise_domain
from ..contacts.spec import normalise_email
from ..errors import FieldError, NotFound, Unprocessable
from ..models.crm import COMPANY_NAME_KEY, CONTACT_NAME_KEY
from ..resources import repository as repo
from ..resources.spec import ResourceSpec

WEIGHTS = {"email": 1.0, "domain": 1.0, "phone": 0.9, "name_at_company": 0.85}
FUZZY_WEIGHT = 0.8
_LIVE = "c.workspace_id = $1 AND c.archived_at IS NULL"


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
    # the same text CONTACT_NAME_KEY computes in SQL
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


async def _exact(
    conn: asyncpg.Connection | asyncpg.Pool,
    ws: uuid.UUID,
    table: str,
    condition: str,
    arrays: list[list[Any]],
    types: list[str],
    reason: str,
    hits: Hits,
) -> None:
    """``condition`` compares ``c`` (a live row) with ``q`` (one input: q.a, q.b, ...; q.i its index)."""
    if not any(all(v is not None for v in values) for values in zip(*arrays, strict=True)):
        return
    cols = [chr(ord("a") + n) for n in range(len(arrays))]
    unnest = ", ".join(f"${n + 2}::{t}[]" for n, t in enumerate(types))
    sql = (
        f"SELECT q.i, c.id FROM unnest({unnest}) WITH ORDINALITY AS q({', '.join(cols)}, i) "
        f"JOIN {table} AS c ON {_LIVE} AND {condition}"
    )
    for r in await conn.fetch(sql, ws, *arrays):
        hits[r["i"] - 1].setdefault(r["id"], _Found()).add(reason, WEIGHTS[reason])


async def _fuzzy(
    conn: asyncpg.Connection | asyncpg.Pool,
    ws: uuid.UUID,
    table: str,
    expr: str,
    names: list[str | None],
    threshold: float,
    hits: Hits,
) -> None:
    if not any(names):
        return
    # ``%`` (pg_trgm's default 0.3 threshold, at most ours) is what the trigram index answers; the
    # similarity() filter then applies the caller's threshold to those few candidates.
    sql = (
        f"SELECT q.i, c.id, similarity({expr}, q.a) AS s FROM unnest($2::text[]) WITH ORDINALITY AS q(a, i) "
        f"JOIN {table} AS c ON {_LIVE} AND {expr} % q.a WHERE similarity({expr}, q.a) >= $3"
    )
    for r in await conn.fetch(sql, ws, names, threshold):
        hits[r["i"] - 1].setdefault(r["id"], _Found()).add("fuzzy_name", FUZZY_WEIGHT * r["s"], r["s"])


def _qualified(expr: str) -> str:
    """The index expression with its columns qualified by ``c.``: same parse tree, so the index applies."""
    return re.sub(r"\b(first_name|last_name|name)\b", r"c.\1", expr)


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
    await _exact(conn, ws, "contacts", "c.email = q.a", [emails], ["text"], "email", hits)
    phones = [phone_key(r.get("phone")) for r in recs]
    digits = "regexp_replace(c.phone, '[^0-9]', '', 'g') = q.a"  # ix_contacts_phone_digits
    await _exact(conn, ws, "contacts", digits, [phones], ["text"], "phone", hits)
    firsts = [_blank(r.get("first_name")) for r in recs]
    lasts = [_blank(r.get("last_name")) for r in recs]
    companies = [r.get("company_id") for r in recs]
    await _exact(
        conn,
        ws,
        "contacts",
        "c.company_id = q.c AND lower(c.first_name) = q.a AND lower(c.last_name) = q.b",
        [firsts, lasts, companies],
        ["text", "text", "uuid"],
        "name_at_company",
        hits,
    )
    names = [contact_name_key(r.get("first_name"), r.get("last_name")) for r in recs]
    await _fuzzy(conn, ws, "contacts", _qualified(CONTACT_NAME_KEY), names, threshold, hits)


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
    await _exact(conn, ws, "companies", "c.domain = q.a", [domains], ["text"], "domain", hits)
    names = [_blank(rec.get("name")) for _, _, rec in inputs]
    await _fuzzy(conn, ws, "companies", _qualified(COMPANY_NAME_KEY), names, threshold, hits)
