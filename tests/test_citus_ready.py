"""Ready for Citus: the migrated schema and the SQL the code sends keep to Citus's rules for tables
distributed by ``workspace_id`` (docs/SCALING.md: what a deployment needs, what is checked here and what
is not). The rules themselves live in tests/citus_rules.py; they read the statements compiled from
SQLAlchemy Core (``compiled_statements``) and the little SQL text left in the source alike.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from citus_rules import (
    CTID_MODIFY,
    MUTABLE_IN_CASE,
    MUTABLE_IN_UPSERT,
    SETS_WORKSPACE,
    STABLE_ON_COLUMNS,
    UNSCOPED_LOCK,
    VOLATILE_IN_UPDATE,
    Functions,
    Problem,
    Schema,
    load_functions,
    load_schema,
    schema_problems,
    source_statements,
    statement_problems,
)

from crm_api import sql
from crm_api.db import asyncpg_dsn
from crm_api.resources import repository
from crm_api.resources.spec import REGISTRY

SRC = Path(__file__).resolve().parents[1] / "src" / "crm_api"

# Shared tables: everything else with workspace_id is distributed by it, all colocated.
REFERENCE_TABLES = {
    "workspaces": "the tenants themselves: every distributed table's key to it is a key to a reference table",
    "api_keys": "read by key hash before the workspace is known (every request's auth), so a copy on each "
    "node answers it locally; its unique key_hash index is allowed on a reference table; written rarely",
}
LOCAL_TABLES = {"alembic_version": "alembic's bookkeeping, on the coordinator only"}


@dataclass(frozen=True)
class Allowed:
    """A statement Citus cannot run as it stands, kept on purpose: ``contains`` picks it out (a piece of
    its SQL, whitespace collapsed, any case) and ``reason`` says why it stays and what a cluster does."""

    rule: str
    contains: str
    reason: str

    def matches(self, problem: Problem) -> bool:
        return problem.rule == self.rule and self.contains.lower() in problem.sql.lower()


ALLOWED = [
    Allowed(
        UNSCOPED_LOCK,
        "WITH RECURSIVE queues(",
        "The webhook dispatcher's claim: one statement over every workspace's queue (a recursive loose "
        "index scan, then FOR UPDATE SKIP LOCKED), the one designed exception. On Citus it runs against "
        "each worker's shards of webhook_deliveries (one claim per shard group), not through the "
        "coordinator; see docs/SCALING.md.",
    ),
    Allowed(
        UNSCOPED_LOCK,
        "FROM tickets WHERE (tickets.workspace_id, tickets.id) IN (",
        "The SLA breach job's claim: overdue tickets of every workspace, FOR UPDATE SKIP LOCKED, the "
        "dispatcher claim's twin (it runs beside the dispatcher). Same treatment on Citus: per shard group.",
    ),
    *(
        Allowed(
            UNSCOPED_LOCK,
            f"UPDATE {table} SET status='running'",
            f"The bulk workers' claim of the oldest waiting {table[:-1]} of any workspace (FOR UPDATE "
            "SKIP LOCKED, one row): the dispatcher claim's twin, for jobs. Same treatment on Citus: per "
            "shard group.",
        )
        for table in ("imports", "exports")
    ),
    Allowed(
        UNSCOPED_LOCK,
        "FROM automation_cursors WHERE EXISTS (",
        "The automation workers' claim of a workspace whose event log moved past its cursor (FOR UPDATE "
        "SKIP LOCKED, one row): the dispatcher claim's twin. Same treatment on Citus: per shard group.",
    ),
    Allowed(
        UNSCOPED_LOCK,
        "FROM automations WHERE automations.enabled IS true",
        "The automation workers' claim of a schedule trigger whose check is due, in any workspace (FOR "
        "UPDATE SKIP LOCKED, one row): the dispatcher claim's twin. Same treatment on Citus: per shard "
        "group.",
    ),
]


@pytest.fixture(scope="module")
async def catalog(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    dsn, kwargs = asyncpg_dsn(database_url)
    conn = await asyncpg.connect(dsn, **kwargs)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def schema(catalog: asyncpg.Connection) -> Schema:
    return await load_schema(catalog)


@pytest.fixture(scope="module")
async def functions(catalog: asyncpg.Connection) -> Functions:
    return await load_functions(catalog)


def _columns(schema: Schema) -> set[str]:
    return {c for table in schema.columns.values() for c in table}


# --- the real schema and code ------------------------------------------------------------------------------


def test_the_migrated_schema_keeps_citus_rules(schema: Schema) -> None:
    problems = schema_problems(schema, REFERENCE_TABLES, LOCAL_TABLES)
    assert not problems, "The schema breaks Citus's rules (docs/SCALING.md):\n" + "\n".join(problems)


def test_most_tables_are_distributed(schema: Schema) -> None:
    """The check above means something only while it sees the tenant tables."""
    distributed = set(schema.columns) - set(REFERENCE_TABLES) - set(LOCAL_TABLES)
    assert {"contacts", "deals", "events", "webhook_deliveries", "custom_field_values"} <= distributed


def compiled_statements() -> list[tuple[str, str]]:
    """The statements the code builds with SQLAlchemy Core, as sent: every fixed statement (compiled here
    if nothing ran it yet), every resource's statements, and whatever else this run has compiled so far
    (the request-shaped ones: lists, filters, pages)."""
    for query in sql.QUERIES:
        query.compiled  # noqa: B018 - compiles it
    for spec in REGISTRY.values():
        for shape in (repository.write_statement(spec), *repository.read_statements(spec)):
            sql.COMPILED.add(shape.text)
    return [("compiled", text) for text in sorted(sql.COMPILED)]


def test_the_sql_the_code_sends_keeps_citus_rules(schema: Schema, functions: Functions) -> None:
    statements = source_statements(SRC) + compiled_statements()
    routines = [(f"function {name}()", body) for name, body in sorted(schema.routines.items())]
    problems = statement_problems(statements + routines, functions, _columns(schema))
    unexplained = [p for p in problems if not any(a.matches(p) for a in ALLOWED)]
    assert not unexplained, "SQL that Citus would refuse (docs/SCALING.md):\n" + "\n".join(
        map(str, unexplained)
    )
    unused = [a.contains for a in ALLOWED if not any(a.matches(p) for p in problems)]
    assert not unused, f"allow-list entries that match nothing any more (remove them): {unused}"


def test_the_source_scan_reads_the_statements_that_matter(schema: Schema) -> None:
    """Guards the scan itself: module constants are read as sent, trigger bodies are read, no docstring."""
    statements = dict(source_statements(SRC))
    texts = list(statements.values())
    compiled = [text for _, text in compiled_statements()]
    assert len(texts) + len(compiled) > 50
    claim = next(t for t in compiled if "WITH RECURSIVE queues" in t)
    assert "UPDATE webhook_deliveries AS w" in claim
    erase = next(t for t in compiled if "UPDATE events AS e" in t)
    assert "jsonb_set(jsonb_set(e.data, '{object}'" in erase and "jsonb_object_agg" in erase  # as sent
    assert not any(t.lstrip().startswith("The SLA breach job") for t in texts)
    assert {"custom_field_values_sync", "record_deal_stage_change"} <= set(schema.routines)


# --- the rules catch what they are for ---------------------------------------------------------------------


def _rules(sql: str, functions: Functions, columns: set[str] | None = None) -> set[str]:
    return {p.rule for p in statement_problems([sql], functions, columns or {"revoked_at", "data"})}


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("UPDATE contacts SET id = gen_random_uuid() WHERE workspace_id = $1", VOLATILE_IN_UPDATE),
        ("UPDATE contacts AS c SET score = random() WHERE c.workspace_id = $1", VOLATILE_IN_UPDATE),
        ("UPDATE deals SET updated_at = clock_timestamp() WHERE workspace_id = $1", VOLATILE_IN_UPDATE),
        (
            "WITH x AS (UPDATE deals SET v = nextval('s') WHERE workspace_id = $1 RETURNING id) SELECT 1",
            VOLATILE_IN_UPDATE,
        ),
        (
            "INSERT INTO t (workspace_id, k, at) VALUES ($1, $2, now()) "
            "ON CONFLICT (workspace_id, k) DO UPDATE SET at = now()",
            MUTABLE_IN_UPSERT,
        ),
        (
            "INSERT INTO t VALUES ($1) ON CONFLICT (workspace_id, k) DO UPDATE SET at = EXCLUDED.at "
            "WHERE t.at < current_timestamp",
            MUTABLE_IN_UPSERT,
        ),
        (
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE workspace_id = $1",
            MUTABLE_IN_CASE,
        ),
        (
            "UPDATE e SET s = CASE WHEN e.f < now() - interval '5 days' THEN 'x' ELSE s END "
            "WHERE workspace_id = $1",
            MUTABLE_IN_CASE,
        ),
        (
            "UPDATE events AS e SET data = jsonb_build_object('a', e.data) WHERE workspace_id = $1",
            STABLE_ON_COLUMNS,
        ),
        ("UPDATE t SET x = to_json(data) WHERE workspace_id = $1", STABLE_ON_COLUMNS),
        ("SELECT id FROM tickets WHERE due_at < $1 FOR UPDATE SKIP LOCKED", UNSCOPED_LOCK),
        ("SELECT id FROM pipelines WHERE id = $1 FOR NO KEY UPDATE", UNSCOPED_LOCK),
        ("WITH RECURSIVE q AS (SELECT 1 UNION ALL SELECT 1 FROM q) SELECT * FROM q", UNSCOPED_LOCK),
        ("DELETE FROM k WHERE ctid = ANY(ARRAY(SELECT ctid FROM k LIMIT 5))", CTID_MODIFY),
        ("UPDATE deals SET workspace_id = $2, name = $3 WHERE workspace_id = $1", SETS_WORKSPACE),
        ("UPDATE deals SET (name, workspace_id) = ($3, $2) WHERE workspace_id = $1", SETS_WORKSPACE),
    ],
)
def test_a_statement_citus_refuses_is_caught(sql: str, rule: str, functions: Functions) -> None:
    assert rule in _rules(sql, functions)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE deals SET updated_at = now(), version = version + 1 WHERE workspace_id = $1 AND id = $2",
        "UPDATE d SET leased_until = now() + make_interval(secs => $5) WHERE d.workspace_id = $1",
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3) WHERE workspace_id = $1 AND id = $2",
        "UPDATE events AS e SET data = jsonb_set(e.data, '{object}', $2) WHERE e.workspace_id = $1",
        # a literal's words are data, and SQL in a comment is not run
        "UPDATE t SET note = 'random() FOR UPDATE' WHERE workspace_id = $1 -- clock_timestamp()",
        # volatile functions are fine outside UPDATE (INSERT ... SELECT), and in a CTE beside one
        "WITH a AS (INSERT INTO x SELECT gen_random_uuid()) UPDATE y SET n = 1 WHERE workspace_id = $2",
        "INSERT INTO t VALUES ($1) ON CONFLICT (workspace_id, k) DO UPDATE SET v = EXCLUDED.v RETURNING 1",
        "SELECT id FROM pipelines WHERE workspace_id = $1 AND id = $2 FOR NO KEY UPDATE",
        "SELECT id FROM pipelines WHERE workspace_id = :workspace_id_1 FOR UPDATE",  # SQLAlchemy's style
        "DELETE FROM k WHERE (workspace_id, key) IN (SELECT workspace_id, key FROM k LIMIT 5)",
        "UPDATE t SET (a, b) = (x.a, x.b) FROM r AS x WHERE t.workspace_id = x.workspace_id",
    ],
)
def test_a_statement_citus_runs_passes(sql: str, functions: Functions) -> None:
    assert _rules(sql, functions) == set()


def test_sql_inside_a_routines_literal_is_checked(functions: Functions) -> None:
    body = "BEGIN EXECUTE format('UPDATE %I SET at = clock_timestamp() WHERE workspace_id = $1', t); END"
    problems = statement_problems([("function f()", body)], functions)
    assert [(p.rule, p.where) for p in problems] == [(VOLATILE_IN_UPDATE, "function f() (dynamic SQL)")]


async def test_a_schema_that_breaks_citus_rules_is_caught(catalog: asyncpg.Connection) -> None:
    """The catalogue queries and the rules, on a throwaway schema holding one of each mistake."""
    name = f"citus_probe_{uuid.uuid4().hex[:8]}"
    await catalog.execute(f"""
        CREATE SCHEMA {name};
        CREATE TABLE {name}.workspaces (id uuid PRIMARY KEY);
        CREATE TABLE {name}.notes (
            workspace_id uuid NOT NULL REFERENCES {name}.workspaces, id uuid, slug text,
            PRIMARY KEY (workspace_id, id), UNIQUE (slug), UNIQUE (workspace_id, slug));
        CREATE UNIQUE INDEX notes_lower_slug ON {name}.notes (lower(slug));
        CREATE TABLE {name}.tags (
            workspace_id uuid, id uuid PRIMARY KEY, note_id uuid,
            FOREIGN KEY (workspace_id, note_id) REFERENCES {name}.notes (workspace_id, id)
                ON DELETE SET NULL);
        CREATE TABLE {name}.links (
            workspace_id uuid NOT NULL, id uuid, other_ws uuid, note_id uuid, PRIMARY KEY (workspace_id, id),
            FOREIGN KEY (other_ws, note_id) REFERENCES {name}.notes (workspace_id, id));
        CREATE TABLE {name}.settings (id int PRIMARY KEY, note_ws uuid, note_id uuid,
            FOREIGN KEY (note_ws, note_id) REFERENCES {name}.notes (workspace_id, id));
        CREATE TABLE {name}.orphans (id int PRIMARY KEY);
    """)
    try:
        probe = await load_schema(catalog, name)
    finally:
        await catalog.execute(f"DROP SCHEMA {name} CASCADE")
    problems = "\n".join(
        schema_problems(probe, {"workspaces": "", "settings": "", "gone": ""}, {"settings": ""})
    )
    for expected in [
        "gone: declared a reference or local table, but there is no such table",
        "settings: declared both a reference and a local table",
        "orphans: has no workspace_id",
        "tags.workspace_id is nullable",
        "tags: primary key tags_pkey (id) does not hold workspace_id",
        "notes: unique index notes_slug_key (slug) does not hold workspace_id",
        "notes: unique index notes_lower_slug (<expression>) does not hold workspace_id",
        "tags: foreign key tags_workspace_id_note_id_fkey -> notes sets the distribution column on delete",
        "links: foreign key links_other_ws_note_id_fkey -> notes does not pair workspace_id with",
        "settings: foreign key settings_note_ws_note_id_fkey -> notes: a shared (reference or local) table "
        "may not reference a distributed one",
    ]:
        assert expected in problems
    assert "notes_workspace_id_slug_key" not in problems  # unique with workspace_id: fine
    assert "notes_workspace_id_fkey" not in problems  # distributed -> reference: fine
