"""The search's SQL: one branch per object type, each answered by the type's trigram index on
``search_text`` and cut to the page's size by its best scores, merged by ``UNION ALL``. One statement per
(types, kind of query, word count), compiled once.

Words match with pg_trgm's ``<%`` (word similarity of the query to some stretch of the text at least
``pg_trgm.word_similarity_threshold``, 0.6 by default): words in any order, one typo in a name of two words.
A phone matches its E.164 digits with ``LIKE`` (the same trigram index); its score is 1. A contact is also
found by its own words and its company's together (``ann acme``): the companies that match one of the
query's words (their index, at most ``COMPANIES`` of them), then their contacts (``ix_contacts_company``),
scored on the contact's and the company's text together. Each branch ranks at most ``CANDIDATES`` matches.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sqlalchemy import REAL, ColumnElement, Select, Text, and_, cast, func, literal, or_, select, union_all

from .. import sql
from ..textsearch import fold

TYPES = ("contact", "company", "deal", "ticket")
COMPANIES = 20
CANDIDATES = 500
"""Matches of one branch ranked, at most: a query that matches more (2,500 people named María García)
ranks the first 500 the index finds, so its cost stays bounded by 500 rows read, not by how common it is."""
"""How many matching companies a query's words may bring the contacts of (the best-scored)."""

_Q = sql.param("q", Text)
_LIKE = sql.param("like", Text)
_LIMIT = sql.param("limit")


def _word(i: int) -> ColumnElement[str]:
    return sql.param(f"w{i}", Text)


def _matches(text: ColumnElement[str], phone: bool) -> tuple[ColumnElement[bool], ColumnElement[float]]:
    """The condition the trigram index serves, and the hit's score."""
    if phone:
        return text.like(_LIKE), cast(sql.const(1), REAL)
    return _Q.bool_op("<%")(text), func.word_similarity(_Q, text, type_=REAL)


def _hit(
    kind: str,
    t: Any,
    title: ColumnElement[Any],
    subtitle: ColumnElement[Any],
    where: list[ColumnElement[bool]],
    score: ColumnElement[float],
) -> Select[Any]:
    found = (
        select(
            literal(kind, Text).label("object"),
            t.c.id,
            title.label("title"),
            subtitle.label("subtitle"),
            score.label("score"),
        )
        .where(t.c.workspace_id == sql.param("ws"), t.c.archived_at.is_(None), *where)
        .limit(CANDIDATES)
    )
    return _best(found)


def _best(found: Select[Any]) -> Select[Any]:
    """The page's best of at most ``CANDIDATES`` matches."""
    sub = found.subquery()
    return select(*sub.c).order_by(sub.c.score.desc(), sub.c.id).limit(_LIMIT)


def _name(c: Any) -> ColumnElement[Any]:
    full = func.nullif(func.concat_ws(" ", c.c.first_name, c.c.last_name), "")
    return func.coalesce(full, c.c.email, c.c.phone, "")


def _contacts(phone: bool, words: int) -> Any:
    c = sql.table("contacts")
    match, score = _matches(c.c.search_text, phone)
    subtitle = func.coalesce(c.c.email, c.c.phone)
    if phone:
        return _hit("contact", c, _name(c), subtitle, [match], score)
    named = _named(c, words, score).cte("named_contacts")
    enough = select(func.count()).select_from(named).scalar_subquery() >= _LIMIT
    return union_all(select(*named.c), _hit("contact", c, _name(c), subtitle, [match, ~enough], score))


def _named(c: Any, words: int, score: ColumnElement[float]) -> Select[Any]:
    """Contacts whose text starts with the query's words, in its order or (two words) the other one, and
    that score 1 (every word whole): the page's worth, from ranges of ``ix_contacts_search_prefix``. The
    trigram scan runs only when they are fewer than the page (``_contacts``); no other match can score
    higher, so they are the page a common name (2,500 María Garcías) asks for, read without that scan."""
    st = c.c.search_text
    ranges = [and_(st.op("~>=~")(sql.param(f"lo{i}", Text)), st.op("~<~")(sql.param(f"hi{i}", Text)))
              for i in range(2 if words == 2 else 1)]  # fmt: skip
    return (
        select(
            literal("contact", Text).label("object"),
            c.c.id,
            _name(c).label("title"),
            func.coalesce(c.c.email, c.c.phone).label("subtitle"),
            score.label("score"),
        )
        .where(c.c.workspace_id == sql.param("ws"), c.c.archived_at.is_(None), or_(*ranges), score >= 1)
        .limit(_LIMIT)
    )


def _contacts_at_companies(words: int) -> Select[Any]:
    """Contacts found by their words and their company's together."""
    co = sql.table("companies").alias("co")
    found = [_word(i).bool_op("<%")(co.c.search_text) for i in range(words)]
    # like every branch, at most CANDIDATES matches scored: a common word (1,000 companies named Acme
    # something) would have every match scored to pick 20
    matched = (
        select(co.c.id, co.c.name, co.c.search_text)
        .where(co.c.workspace_id == sql.param("ws"), co.c.archived_at.is_(None), or_(*found))
        .limit(CANDIDATES)
        .subquery("matched")
    )
    best = (
        select(*matched.c)
        .order_by(func.word_similarity(_Q, matched.c.search_text, type_=REAL).desc(), matched.c.id)
        .limit(COMPANIES)
        .cte("matched_companies")
    )
    c = sql.table("contacts").alias("c")
    both = c.c.search_text.op("||")(literal(" ", Text)).op("||")(best.c.search_text)
    score = func.word_similarity(_Q, both, type_=REAL)
    return _best(
        select(
            literal("contact", Text).label("object"),
            c.c.id,
            _name(c).label("title"),
            func.concat_ws(" · ", best.c.name, c.c.email).label("subtitle"),
            score.label("score"),
        )
        .select_from(best.join(c, c.c.company_id == best.c.id))
        .where(
            c.c.workspace_id == sql.param("ws"),
            c.c.archived_at.is_(None),
            _Q.bool_op("<%")(both),
        )
        .limit(CANDIDATES)
    )


def _companies(phone: bool, words: int) -> Select[Any]:
    t = sql.table("companies")
    match, score = _matches(t.c.search_text, phone)
    return _hit("company", t, t.c.name, t.c.domain, [match], score)


def _deals(phone: bool, words: int) -> Select[Any]:
    t = sql.table("deals")
    match, score = _matches(t.c.search_text, phone)
    subtitle = func.concat_ws(" ", t.c.status, t.c.amount, t.c.currency)
    return _hit("deal", t, t.c.name, subtitle, [match], score)


def _tickets(phone: bool, words: int) -> Select[Any]:
    t = sql.table("tickets")
    match, score = _matches(t.c.search_text, phone)
    number = literal("#", Text).op("||")(t.c.number)
    return _hit(
        "ticket", t, t.c.subject, func.concat_ws(" ", number, t.c.status, t.c.priority), [match], score
    )


_BRANCHES = {"contact": _contacts, "company": _companies, "deal": _deals, "ticket": _tickets}


@sql.shape
def _statement(types: tuple[str, ...], phone: bool, words: int) -> Any:
    branches = [_BRANCHES[kind](phone, words).subquery().select() for kind in types]
    if "contact" in types and "company" in types and not phone and words > 1:
        branches.append(_contacts_at_companies(words).subquery().select())
    return union_all(*branches) if len(branches) > 1 else branches[0]


_LAST = "\U0010ffff"
"""Above every character: ``prefix + _LAST`` bounds the texts starting with ``prefix`` (``~<~`` compares
bytes)."""
MAX_WORDS = 4
"""Words of a query each tried against company names (for the contacts of those companies)."""


async def hits(
    conn: asyncpg.Pool | asyncpg.Connection,
    workspace_id: uuid.UUID,
    types: tuple[str, ...],
    query: str,
    phone: bool,
    limit: int,
) -> list[dict[str, Any]]:
    """The best ``limit`` hits, best first, each object once (its best score)."""
    words = [w for w in fold(query).split() if len(w) >= 2][:MAX_WORDS] if not phone else []
    params: dict[str, Any] = {"ws": workspace_id, "q": query, "like": f"%{query}%", "limit": limit}
    params.update({f"w{i}": w for i, w in enumerate(words)})
    if not phone:  # the prefixes of ``_named``: the words in their order, and reversed
        for i, prefix in enumerate((query, " ".join(reversed(query.split())))):
            params.update({f"lo{i}": prefix, f"hi{i}": prefix + _LAST})
    rows = await _statement(types, phone, len(words)).fetch(conn, **params)
    best: dict[tuple[str, uuid.UUID], dict[str, Any]] = {}
    for r in rows:
        key = (r["object"], r["id"])
        if key not in best or r["score"] > best[key]["score"]:
            best[key] = dict(r)
    ranked = sorted(best.values(), key=lambda h: (-h["score"], TYPES.index(h["object"]), str(h["id"])))
    return ranked[:limit]
