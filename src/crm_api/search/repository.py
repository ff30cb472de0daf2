"""The search's SQL: one branch per object type, each answered by the type's trigram index on
``search_text`` and cut to the page's size by its best scores, merged by ``UNION ALL``. One statement per
(types, kind of query, word count, email-shaped or not), compiled once.

Words match with pg_trgm's ``<%`` (word similarity of the query to some stretch of the text at least
``pg_trgm.word_similarity_threshold``, 0.6 by default): words in any order, one typo in a name of two words.
A phone matches its E.164 digits with ``LIKE`` (the same trigram index); its score is 1. Prefixes come
first, as btree ranges read in index order (``_prefixed``): a name typed whole, an email's start; the
contacts' trigram scan runs only when they leave the page short. A contact is also found by its own words
and its company's together (``ann acme``): the companies whose name starts with one of the words (or,
for a word no company starts with, that its trigrams match), at most ``COMPANIES`` of them, then their
contacts whose text starts with one of the words (or, when none does, that the whole query matches),
scored on the contact's and the company's text together. Each branch ranks at most ``CANDIDATES`` matches.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
from sqlalchemy import REAL, ColumnElement, Select, Text, cast, func, literal, or_, select, true, union_all
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op

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


def _best(found: Any) -> Select[Any]:
    """The page's best of at most ``CANDIDATES`` matches."""
    sub = found.subquery()
    return select(*sub.c).order_by(sub.c.score.desc(), sub.c.id).limit(_LIMIT)


def _name(c: Any) -> ColumnElement[Any]:
    full = func.nullif(func.concat_ws(" ", c.c.first_name, c.c.last_name), "")
    return func.coalesce(full, c.c.email, c.c.phone, "")


def _contacts(phone: bool, words: int, email: bool) -> Any:
    c = sql.table("contacts")
    match, score = _matches(c.c.search_text, phone)
    subtitle = func.coalesce(c.c.email, c.c.phone)
    if phone:
        return _hit("contact", c, _name(c), subtitle, [match], score)
    st, em = c.c.search_text, c.c.email
    names = [(st, f"{i}") for i in range(2 if words == 2 else 1)]  # in the query's order, and reversed
    named = _prefixed(c, names, score >= 1).cte("named_contacts")
    parts = [select(*named.c)]
    enough: ColumnElement[bool] = select(func.count()).select_from(named).scalar_subquery() >= _LIMIT
    if email:  # the local part whole (``q@``), then every email that starts with the query
        emailed = _prefixed(c, [(em, "e0"), (em, "e1")], None).cte("emailed_contacts")
        parts.append(select(*emailed.c))
        enough = or_(enough, select(emailed.c.id).exists())
    return union_all(*parts, _hit("contact", c, _name(c), subtitle, [match, ~enough], score))


def _byte_order(column: ColumnElement[str]) -> UnaryExpression[str]:
    """``column USING ~<~``: the order of a ``text_pattern_ops`` btree. A range read in it stops at the page
    (``LIMIT``); without it the planner may prefer a sequential scan that tests every row (it did, 110 ms
    for ``maria garcia``, estimating 3,300 matches spread evenly)."""
    return UnaryExpression(column, modifier=custom_op("USING ~<~"))


def _prefixed(c: Any, ranges: list[tuple[Any, str]], whole: ColumnElement[bool] | None) -> Any:
    """Contacts whose column starts with a prefix (params ``lo<suffix>``, ``hi<suffix>``), a page's worth
    from each range in index order (``ix_contacts_search_prefix``, ``ix_contacts_email_prefix``).

    Names: the text starts with the query's words and scores 1 (every word whole); no other match can
    score higher, so when they fill the page the trigram scan is skipped (``_contacts``) and a common name
    (2,500 María Garcías) is read without it. Emails (a query shaped like one, ``emma.lee123``): those that
    start with it are what the person typing wants, so when there are any the trigram scan is skipped too;
    its near misses (``emma.lee1245``) would only bury them."""
    reads = []
    for column, suffix in ranges:
        low = column.op("~>=~")(sql.param(f"lo{suffix}", Text))
        high = column.op("~<~")(sql.param(f"hi{suffix}", Text))
        found = (
            select(
                literal("contact", Text).label("object"),
                c.c.id,
                _name(c).label("title"),
                func.coalesce(c.c.email, c.c.phone).label("subtitle"),
                func.word_similarity(_Q, c.c.search_text, type_=REAL).label("score"),
            )
            .where(c.c.workspace_id == sql.param("ws"), c.c.archived_at.is_(None), low, high)
            .where(*([whole] if whole is not None else []))
            .order_by(_byte_order(column))
            .limit(_LIMIT)
        )
        reads.append(found.subquery().select())
    return union_all(*reads) if len(reads) > 1 else reads[0]


def _named_companies(words: int) -> Any:
    """The companies the query's words may name, at most ``COMPANIES``, closest first. For each word, those
    whose text starts with it (``ix_companies_search_prefix``, in index order, a page each); only when
    none does, those its trigrams match (typos: ``acne``), at most ``CANDIDATES`` of them, so a common
    word (1,000 companies named Acme something) costs a range read, not 500 rows scored."""
    co = sql.table("companies").alias("co")
    st = co.c.search_text
    live = (co.c.workspace_id == sql.param("ws"), co.c.archived_at.is_(None))
    parts: list[Any] = []
    for i in range(words):
        low, high = st.op("~>=~")(sql.param(f"wlo{i}", Text)), st.op("~<~")(sql.param(f"whi{i}", Text))
        started = (
            select(co.c.id, co.c.name, st)
            .where(*live, low, high)
            .order_by(_byte_order(st))
            .limit(COMPANIES)
            .cte(f"companies_started_{i}")
        )
        fuzzy = select(co.c.id, co.c.name, st).where(
            *live, _word(i).bool_op("<%")(st), ~select(started.c.id).exists()
        )
        parts += [select(*started.c), fuzzy.limit(CANDIDATES).subquery().select()]
    found = union_all(*parts).subquery("matched")
    return (
        select(*found.c)
        .order_by(func.word_similarity(_Q, found.c.search_text, type_=REAL).desc(), found.c.id)
        .limit(COMPANIES)
        .cte("matched_companies")
    )


def _contacts_at_companies(words: int) -> Any:
    """Contacts found by their words and their company's together (``ann acme``): at the companies the
    words name, those whose text starts with one of the words (``ix_contacts_company_search``, a page per
    company and word); only when there are none, each of their contacts that the whole query's trigrams
    match (a typo: ``anne globex``), at most ``CANDIDATES`` scored."""
    best = _named_companies(words)
    c = sql.table("contacts").alias("c")

    def shown(t: Any) -> tuple[ColumnElement[Any], ...]:
        both = t.c.search_text.op("||")(literal(" ", Text)).op("||")(best.c.search_text)
        subtitle = func.concat_ws(" · ", best.c.name, t.c.email)
        score = func.word_similarity(_Q, both, type_=REAL)
        return (literal("contact", Text).label("object"), t.c.id, _name(t).label("title"),
                subtitle.label("subtitle"), score.label("score"))  # fmt: skip

    live = (c.c.workspace_id == sql.param("ws"), c.c.archived_at.is_(None))
    started = []
    for i in range(words):
        low = c.c.search_text.op("~>=~")(sql.param(f"wlo{i}", Text))
        high = c.c.search_text.op("~<~")(sql.param(f"whi{i}", Text))
        at = (
            select(c.c.id, c.c.first_name, c.c.last_name, c.c.email, c.c.phone, c.c.search_text)
            .where(*live, c.c.company_id == best.c.id, low, high)
            .order_by(_byte_order(c.c.search_text))
            .limit(_LIMIT)
            .lateral(f"started_{i}")
        )
        started.append(select(*shown(at)).select_from(best.join(at, true())))
    # scored rows bounded as in every branch: 20 companies x 4 words x a page of 50 could be 4,000
    prefixed = union_all(*started).limit(CANDIDATES).cte("contacts_started")
    both = c.c.search_text.op("||")(literal(" ", Text)).op("||")(best.c.search_text)
    fuzzy = (
        select(*shown(c))
        .select_from(best.join(c, c.c.company_id == best.c.id))
        .where(*live, _Q.bool_op("<%")(both), ~select(prefixed.c.id).exists())
        .limit(CANDIDATES)
    )
    return _best(union_all(select(*prefixed.c), fuzzy.subquery().select()))


def _companies(phone: bool, words: int, email: bool) -> Select[Any]:
    t = sql.table("companies")
    match, score = _matches(t.c.search_text, phone)
    return _hit("company", t, t.c.name, t.c.domain, [match], score)


def _deals(phone: bool, words: int, email: bool) -> Select[Any]:
    t = sql.table("deals")
    match, score = _matches(t.c.search_text, phone)
    subtitle = func.concat_ws(" ", t.c.status, t.c.amount, t.c.currency)
    return _hit("deal", t, t.c.name, subtitle, [match], score)


def _tickets(phone: bool, words: int, email: bool) -> Select[Any]:
    t = sql.table("tickets")
    match, score = _matches(t.c.search_text, phone)
    number = literal("#", Text).op("||")(t.c.number)
    return _hit(
        "ticket", t, t.c.subject, func.concat_ws(" ", number, t.c.status, t.c.priority), [match], score
    )


_BRANCHES = {"contact": _contacts, "company": _companies, "deal": _deals, "ticket": _tickets}


@sql.shape
def _statement(types: tuple[str, ...], phone: bool, words: int, email: bool) -> Any:
    branches = [_BRANCHES[kind](phone, words, email).subquery().select() for kind in types]
    if "contact" in types and "company" in types and not phone and words > 1:
        branches.append(_contacts_at_companies(words).subquery().select())
    return union_all(*branches) if len(branches) > 1 else branches[0]


_EMAILISH = re.compile(r"(?=.*[a-z])(?=.*[0-9@._+-])[^\s]+")
"""A query shaped like an email or its start: one word, a letter, and a digit or ``@._+-``."""
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
    params.update(
        {f"wlo{i}": w for i, w in enumerate(words)} | {f"whi{i}": w + _LAST for i, w in enumerate(words)}
    )
    email = not phone and _EMAILISH.fullmatch(query) is not None
    if not phone:  # the prefixes of ``_named``: the words in their order, and reversed
        for i, prefix in enumerate((query, " ".join(reversed(query.split())))):
            params.update({f"lo{i}": prefix, f"hi{i}": prefix + _LAST})
    if email:  # and of its email ranges: the local part whole, then the start
        for i, prefix in enumerate((query + "@", query)):
            params.update({f"loe{i}": prefix, f"hie{i}": prefix + _LAST})
    rows = await _statement(types, phone, len(words), email).fetch(conn, **params)
    best: dict[tuple[str, uuid.UUID], dict[str, Any]] = {}
    for r in rows:
        key = (r["object"], r["id"])
        if key not in best or r["score"] > best[key]["score"]:
            best[key] = dict(r)
    ranked = sorted(best.values(), key=lambda h: (-h["score"], TYPES.index(h["object"]), str(h["id"])))
    return ranked[:limit]
