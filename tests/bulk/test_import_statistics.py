"""Planner statistics an import outgrew are refreshed: without them PostgreSQL may check every foreign key
into the table through an index that only narrows the workspace, and each chunk is slower than the last."""

from __future__ import annotations

import asyncio

import asyncpg

from crm_api.bulk import repository as repo
from crm_api.db import asyncpg_dsn
from crm_api.migrate import upgrade

_CONTACTS = """
INSERT INTO contacts (workspace_id, id, created_at, updated_at, version, email, tags, custom_fields,
                      external_ids, marketing_consent, search_text)
SELECT $1, gen_random_uuid(), now(), now(), 1, NULL, '{}', '{}', '{}', false, ''
FROM generate_series(1, $2::int) AS i
"""


async def test_a_table_grown_past_its_statistics_is_analyzed_once(empty_database: str) -> None:
    await asyncio.to_thread(upgrade, empty_database)
    dsn, options = asyncpg_dsn(empty_database)
    conn = await asyncpg.connect(dsn, **options)
    try:
        ws = await conn.fetchval(
            "INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), 'stats') RETURNING id"
        )
        await conn.execute(_CONTACTS, ws, 400)
        await conn.execute("SELECT pg_stat_force_next_flush()")  # the counters, now, not within a second
        assert await repo.refresh_statistics(conn, ["contacts", "companies"]) == []  # under 500 changes

        await conn.execute(_CONTACTS, ws, 400)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        assert await repo.refresh_statistics(conn, ["contacts", "companies"]) == ["contacts"]
        assert await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'contacts'") == 800
        await conn.execute("SELECT pg_stat_force_next_flush()")
        assert await repo.refresh_statistics(conn, ["contacts"]) == []  # fresh now

        await conn.execute(_CONTACTS, ws, 700)  # 700 changes against 800 rows known: not yet outgrown
        await conn.execute("SELECT pg_stat_force_next_flush()")
        assert await repo.refresh_statistics(conn, ["contacts"]) == []
    finally:
        await conn.close()
