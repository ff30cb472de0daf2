"""Citus's rules for a schema distributed by ``workspace_id``, as checks over the catalogue and over SQL text.

Two halves, both pure functions so that other tests can feed them:

- ``schema_problems(schema)`` over a ``Schema`` read from pg_catalog by ``load_schema``: which tables are
  distributed, which are reference or local tables, and whether their keys and foreign keys fit Citus.
- ``statement_problems(statements, functions)`` over SQL strings (from ``src/`` by ``source_statements``,
  from PL/pgSQL bodies by ``load_schema``, or compiled by SQLAlchemy): the statement shapes Citus refuses
  on distributed and reference tables. ``functions`` tells each function's volatility (``load_functions``).

The statement checks read text, not a parse tree: a function is recognised by ``name(``, and an overloaded
name counts as non-immutable only when every overload is. docs/SCALING.md lists what is and is not checked.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

DISTRIBUTION_COLUMN = "workspace_id"


# --- the schema ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UniqueKey:
    table: str
    name: str
    columns: tuple[str, ...]  # key columns; an expression column is ""
    kind: str  # "primary key", "unique index", "exclusion constraint"


@dataclass(frozen=True)
class ForeignKey:
    table: str
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str  # pg_constraint.confdeltype: a no action, r restrict, c cascade, n set null, d set default
    on_update: str


@dataclass
class Schema:
    columns: dict[str, dict[str, tuple[str, bool]]]  # table -> column -> (type, not null)
    unique_keys: list[UniqueKey]
    foreign_keys: list[ForeignKey]
    routines: dict[str, str] = field(default_factory=dict)  # PL/pgSQL and SQL function bodies by name

    def has_distribution_column(self, table: str) -> bool:
        return DISTRIBUTION_COLUMN in self.columns[table]


_TABLES = """
SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
ORDER BY c.relname, a.attnum
"""

# pg_index holds primary keys, unique constraints and unique indexes alike; only key columns count
# (INCLUDE columns are carried, not compared).
_UNIQUE = """
SELECT t.relname AS table, i.relname AS name,
       CASE WHEN x.indisprimary THEN 'primary key' ELSE 'unique index' END AS kind,
       array(SELECT coalesce(a.attname, '')
             FROM unnest(x.indkey[:x.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns
FROM pg_index AS x
JOIN pg_class AS t ON t.oid = x.indrelid
JOIN pg_class AS i ON i.oid = x.indexrelid
JOIN pg_namespace AS n ON n.oid = t.relnamespace
WHERE n.nspname = $1 AND x.indisunique
UNION ALL
SELECT t.relname, c.conname, 'exclusion constraint',
       array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.ord)
FROM pg_constraint AS c
JOIN pg_class AS t ON t.oid = c.conrelid
JOIN pg_namespace AS n ON n.oid = c.connamespace
WHERE n.nspname = $1 AND c.contype = 'x'
"""

_FOREIGN = """
SELECT t.relname AS table, c.conname AS name, r.relname AS ref_table,
       c.confdeltype::text AS on_delete, c.confupdtype::text AS on_update,
       array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS ref_columns
FROM pg_constraint AS c
JOIN pg_class AS t ON t.oid = c.conrelid
JOIN pg_class AS r ON r.oid = c.confrelid
JOIN pg_namespace AS n ON n.oid = c.connamespace
WHERE n.nspname = $1 AND c.contype = 'f'
"""

# The schema's own routines (trigger functions among them), not those an extension installed.
_ROUTINES = """
SELECT p.proname AS name, p.prosrc AS body
FROM pg_proc AS p
JOIN pg_namespace AS n ON n.oid = p.pronamespace
JOIN pg_language AS l ON l.oid = p.prolang
WHERE n.nspname = $1 AND l.lanname IN ('plpgsql', 'sql')
  AND NOT EXISTS (SELECT 1 FROM pg_depend AS d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
"""


async def load_schema(conn: asyncpg.Connection, schema: str = "public") -> Schema:
    columns: dict[str, dict[str, tuple[str, bool]]] = {}
    for r in await conn.fetch(_TABLES, schema):
        columns.setdefault(r["table"], {})[r["column"]] = (r["type"], r["not_null"])
    unique = [
        UniqueKey(r["table"], r["name"], tuple(r["columns"]), r["kind"])
        for r in await conn.fetch(_UNIQUE, schema)
    ]
    foreign = [
        ForeignKey(
            r["table"],
            r["name"],
            tuple(r["columns"]),
            r["ref_table"],
            tuple(r["ref_columns"]),
            r["on_delete"],
            r["on_update"],
        )
        for r in await conn.fetch(_FOREIGN, schema)
    ]
    routines = {r["name"]: r["body"] for r in await conn.fetch(_ROUTINES, schema)}
    return Schema(columns, unique, foreign, routines)


def schema_problems(schema: Schema, reference: Mapping[str, str], local: Mapping[str, str]) -> list[str]:
    """What Citus would refuse when every table with ``workspace_id`` is distributed by it (colocated), the
    ``reference`` tables are replicated to every node and the ``local`` ones stay on the coordinator."""
    problems: list[str] = []
    declared = set(reference) | set(local)
    for name in sorted(set(declared) - set(schema.columns)):
        problems.append(f"{name}: declared a reference or local table, but there is no such table")
    for name in sorted(set(reference) & set(local)):
        problems.append(f"{name}: declared both a reference and a local table")
    distributed = {t for t in schema.columns if t not in declared and schema.has_distribution_column(t)}
    for name in sorted(set(schema.columns) - declared - distributed):
        problems.append(
            f"{name}: has no {DISTRIBUTION_COLUMN}, so it cannot be distributed with the others; add the "
            "column, or declare it a reference table (small, read everywhere) or a local one"
        )

    # colocation: one distribution column type for every distributed table
    types = {schema.columns[t][DISTRIBUTION_COLUMN][0] for t in distributed}
    if "workspaces" in schema.columns and "id" in schema.columns["workspaces"]:
        types.add(schema.columns["workspaces"]["id"][0])
    if len(types) > 1:
        problems.append(
            f"{DISTRIBUTION_COLUMN} has several types ({', '.join(sorted(types))}): tables "
            "are colocated only when their distribution columns share one type"
        )
    for t in sorted(distributed):
        if not schema.columns[t][DISTRIBUTION_COLUMN][1]:
            problems.append(f"{t}.{DISTRIBUTION_COLUMN} is nullable: Citus refuses a row without it")

    for key in schema.unique_keys:
        if key.table in distributed and DISTRIBUTION_COLUMN not in key.columns:
            problems.append(
                f"{key.table}: {key.kind} {key.name} ({', '.join(c or '<expression>' for c in key.columns)}) "
                f"does not hold {DISTRIBUTION_COLUMN}; Citus enforces uniqueness within a shard only"
            )

    for fk in schema.foreign_keys:
        label = f"{fk.table}: foreign key {fk.name} -> {fk.ref_table}"
        src_distributed, ref_distributed = fk.table in distributed, fk.ref_table in distributed
        if src_distributed and ref_distributed:
            pairs = dict(zip(fk.columns, fk.ref_columns, strict=True))
            if pairs.get(DISTRIBUTION_COLUMN) != DISTRIBUTION_COLUMN:
                problems.append(
                    f"{label} does not pair {DISTRIBUTION_COLUMN} with {DISTRIBUTION_COLUMN}: a key between "
                    "distributed tables must hold the distribution column on both sides"
                )
            if fk.on_delete in "nd" or fk.on_update not in "ar":
                problems.append(
                    f"{label} sets the distribution column on delete or changes it on update; Citus "
                    "allows only NO ACTION/RESTRICT/CASCADE on delete and NO ACTION/RESTRICT on update"
                )
        elif ref_distributed:
            problems.append(
                f"{label}: a shared (reference or local) table may not reference a distributed one"
            )
        elif fk.table in reference and fk.ref_table not in reference:
            problems.append(f"{label}: a reference table may reference only reference tables")
    return problems


# --- the SQL -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Functions:
    """Volatility by function name, over every overload (pg_proc.provolatile: i, s or v)."""

    volatility: Mapping[str, frozenset[str]] = field(repr=False)

    def volatile(self, name: str) -> bool:
        return "v" in self.volatility.get(name, frozenset())

    def never_immutable(self, name: str) -> bool:
        if name in _CLOCK:
            return True
        kinds = self.volatility.get(name)
        return bool(kinds) and "i" not in kinds


async def load_functions(conn: asyncpg.Connection) -> Functions:
    rows = await conn.fetch(
        "SELECT proname, array_agg(DISTINCT provolatile::text) AS v FROM pg_proc GROUP BY 1"
    )
    return Functions({r["proname"]: frozenset(r["v"]) for r in rows})


@dataclass(frozen=True)
class Problem:
    rule: str
    where: str
    sql: str  # the statement, whitespace collapsed

    def __str__(self) -> str:
        return f"{self.where}: {self.rule}\n    {self.sql[:300]}"


# Rules, as the messages name them.
VOLATILE_IN_UPDATE = "a VOLATILE function in an UPDATE (Citus: must not be VOLATILE)"
MUTABLE_IN_UPSERT = "a non-IMMUTABLE function in ON CONFLICT DO UPDATE (Citus: must be IMMUTABLE)"
MUTABLE_IN_CASE = "a non-IMMUTABLE function inside CASE or COALESCE in an UPDATE (Citus refuses it)"
STABLE_ON_COLUMNS = "a STABLE function called on columns in an UPDATE (Citus refuses it)"
UNSCOPED_LOCK = "row locks or WITH RECURSIVE across workspaces (Citus: only in a single-shard query)"
CTID_MODIFY = "a modification that picks rows by ctid (meaningless across shards)"
SETS_WORKSPACE = f"an UPDATE that sets {DISTRIBUTION_COLUMN} (Citus never moves a row between shards)"

# SQL value functions that read the clock without parentheses: STABLE, like now().
_CLOCK = frozenset(("current_timestamp", "current_date", "current_time", "localtimestamp", "localtime"))
_CLOCK_WORDS = re.compile(rf"\b({'|'.join(_CLOCK)})\b")
_CALL = re.compile(r"(?<![\w$])([a-z_][a-z0-9_]*)\s*\(")
_UPDATE = re.compile(
    r"(?<![\w$])update\s+(?:only\s+)?(?!set\b)[\w.\"%]+(?:\s+(?:as\s+)?(?!set\b)\w+)?\s+set\b"
)
_UPSERT = re.compile(r"\bdo\s+update\s+set\b")
_LOCKS = re.compile(r"\bfor\s+(?:update|no\s+key\s+update|share|key\s+share)\b|\bwith\s+recursive\b")
_SCOPED = re.compile(
    rf"\b{DISTRIBUTION_COLUMN}\s*=\s*(?:\$\d+|:\w+|%\(\w+\)s|\?|(?:new|old)\.{DISTRIBUTION_COLUMN}\b)"
)
_DELETE = re.compile(r"\bdelete\s+from\b")
_STATEMENT_START = re.compile(r"^\s*(?:\(\s*)*(?:with|select|insert|update|delete)\b", re.IGNORECASE)
_NOT_COLUMNS = frozenset(
    re.findall(
        r"\w+",
        "and or not is null true false in as case when then else end distinct from any all array row "
        "exists interval select where like ilike between",
    )
)


def _mask(sql: str) -> tuple[str, list[str]]:
    """Lower-cased SQL with comments dropped and string literals blanked (quotes kept), and the literals'
    contents: the structure can then be read without a literal's brackets or words getting in the way."""
    out: list[str] = []
    literals: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
        elif ch == "'":
            j = i + 1
            while j < n:
                if sql[j] == "'" and j + 1 < n and sql[j + 1] == "'":
                    j += 2
                elif sql[j] == "'":
                    break
                else:
                    j += 1
            literals.append(sql[i + 1 : j].replace("''", "'"))
            out.append("'" + " " * (j - i - 1) + "'")
            i = j + 1
        else:
            out.append(ch.lower())
            i += 1
    return "".join(out), literals


def _close(text: str, start: int, stop_words: re.Pattern[str] | None = None) -> int:
    """Where the clause starting at ``start`` ends: a ``;`` or a ``stop_words`` match at its own depth, the
    bracket that closes around it (the end of a CTE), or the end of the text."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return i
        elif depth == 0 and ch == ";":
            return i
        elif depth == 0 and stop_words is not None and (m := stop_words.match(text, i)):
            return m.start()
        i += 1
    return i


def _spans(text: str) -> list[str]:
    """Each CASE ... END and COALESCE(...) in ``text``."""
    spans: list[str] = []
    for m in re.finditer(r"\bcoalesce\s*\(", text):
        end = _close(text, m.end())
        spans.append(text[m.start() : end + 1])
    for m in re.finditer(r"\bcase\b", text):
        depth, pos = 0, m.start()
        for w in re.finditer(r"\b(case|end)\b", text[pos:]):
            depth += 1 if w.group(1) == "case" else -1
            if depth == 0:
                spans.append(text[pos : pos + w.end()])
                break
    return spans


def _calls(text: str) -> list[str]:
    return [m.group(1) for m in _CALL.finditer(text)] + _CLOCK_WORDS.findall(text)


def _arguments(text: str, name: str) -> list[str]:
    out = []
    for m in re.finditer(rf"(?<![\w$]){name}\s*\(", text):
        out.append(text[m.end() : _close(text, m.end())])
    return out


def _references_columns(args: str, columns: frozenset[str]) -> bool:
    if re.search(r"(?<![\w$:])[a-z_]\w*\.[a-z_]\w*(?!\s*\()", args):  # t.column
        return True
    words = set(re.findall(r"(?<![\w$:.])([a-z_]\w*)(?!\s*\()", args)) - _NOT_COLUMNS
    return bool(words & columns)


_RETURNING = re.compile(r"(?<![\w$])returning\b")
_UPDATE_CLAUSE_END = re.compile(r"(?<![\w$])(?:from|where|returning)\b")


def _one(where: str, sql: str, functions: Functions, columns: frozenset[str]) -> list[Problem]:
    text, _ = _mask(sql)
    flat = " ".join(sql.split())
    found: list[str] = []
    for m in _UPDATE.finditer(text):
        whole = text[m.start() : _close(text, m.end())]
        checked = text[m.start() : _close(text, m.end(), _RETURNING)]  # SET, FROM and WHERE
        if any(functions.volatile(f) for f in _calls(whole)):
            found.append(VOLATILE_IN_UPDATE)
        if any(functions.never_immutable(f) for span in _spans(checked) for f in _calls(span)):
            found.append(MUTABLE_IN_CASE)
        stable = {f for f in _calls(checked) if functions.never_immutable(f) and not functions.volatile(f)}
        if any(_references_columns(a, columns) for f in stable for a in _arguments(checked, f)):
            found.append(STABLE_ON_COLUMNS)
        assignments = text[m.end() : _close(text, m.end(), _UPDATE_CLAUSE_END)]
        if re.search(rf"(?<![\w.$]){DISTRIBUTION_COLUMN}\b", assignments):
            found.append(SETS_WORKSPACE)
    for m in _UPSERT.finditer(text):
        clause = text[m.end() : _close(text, m.end(), _RETURNING)]
        if any(functions.never_immutable(f) or functions.volatile(f) for f in _calls(clause)):
            found.append(MUTABLE_IN_UPSERT)
    if _LOCKS.search(text) and not _SCOPED.search(text):
        found.append(UNSCOPED_LOCK)
    if re.search(r"\bctid\b", text) and (_DELETE.search(text) or _UPDATE.search(text)):
        found.append(CTID_MODIFY)
    return [Problem(rule, where, flat) for rule in dict.fromkeys(found)]


def statement_problems(
    statements: Iterable[str | tuple[str, str]], functions: Functions, columns: Iterable[str] = ()
) -> list[Problem]:
    """Citus's refusals found in SQL text: each statement is a string, or ``(where, sql)`` to say where it
    came from. SQL held in string literals (``EXECUTE format('UPDATE ...')`` in PL/pgSQL) is checked too.
    ``columns`` are the schema's column names, to recognise an unqualified column in a function's
    arguments."""
    known = frozenset(columns)
    problems: list[Problem] = []
    for i, item in enumerate(statements):
        where, sql = item if isinstance(item, tuple) else (f"statement {i}", item)
        problems += _one(where, sql, functions, known)
        for literal in _mask(sql)[1]:
            if _STATEMENT_START.match(literal):
                problems += _one(f"{where} (dynamic SQL)", literal, functions, known)
    return problems


# --- SQL in the source -------------------------------------------------------------------------------------

_HOLE = " __expr__ "  # stands for an f-string's {...}: an identifier, so it reads as neither call nor scope


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else _HOLE
            for v in node.values
        )
    return None


def _module_constants(tree: ast.Module) -> dict[int, str]:
    """Module-level ``NAME = "..."`` or ``f"..."`` assignments: the literal node's id -> NAME."""
    names: dict[int, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            names[id(node.value)] = node.targets[0].id
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            names[id(node.value)] = node.target.id
    return names


def source_statements(root: Path) -> list[tuple[str, str]]:
    """Each string literal in the package at ``root`` that reads as an SQL statement: ``(file:line, sql)``.

    A module-level constant is taken from the imported module, so an f-string's parts built from other
    constants are read as sent; elsewhere an f-string's holes become a placeholder identifier. Docstrings
    are skipped."""
    found: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        module_name = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        constants = _module_constants(tree)
        skip = _docstrings(tree)
        inner: set[int] = set()  # the constant parts of an f-string are read as part of it
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                inner.update(id(v) for v in node.values)
        for node in ast.walk(tree):
            if id(node) in skip or id(node) in inner:
                continue
            text = _text(node)
            if text is None or not _STATEMENT_START.match(text):
                continue
            if id(node) in constants:
                value = getattr(importlib.import_module(module_name), constants[id(node)], None)
                text = value if isinstance(value, str) else text
            found.append((f"{path.relative_to(root.parent.parent)}:{node.lineno}", text))
    return found
