"""Migration 0020 on a database that has owners already: each owner id that names no member becomes a
placeholder member, and the log says how many."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import asyncpg
from alembic import command

from crm_api.db import asyncpg_dsn
from crm_api.migrate import alembic_config


async def _run(url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    dsn, kwargs = asyncpg_dsn(url)
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()


def test_existing_owners_become_placeholder_members(empty_database: str) -> None:
    command.upgrade(alembic_config(empty_database), "0018")
    ws, other_ws = uuid.uuid4(), uuid.uuid4()
    shared, lone, assignee = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for w in (ws, other_ws):
        asyncio.run(_run(empty_database, "INSERT INTO workspaces (id, name) VALUES ($1, $2)", w, str(w)))
    insert_contact = (
        "INSERT INTO contacts (workspace_id, id, created_at, updated_at, owner_id)"
        " VALUES ($1, $2, now(), now(), $3)"
    )
    # one owner on two contacts and an activity, another alone, one in another workspace too
    for w, owner in ((ws, shared), (ws, shared), (ws, lone), (other_ws, shared), (ws, None)):
        asyncio.run(_run(empty_database, insert_contact, w, uuid.uuid4(), owner))
    asyncio.run(
        _run(
            empty_database,
            "INSERT INTO activities (workspace_id, id, created_at, updated_at, type, owner_id)"
            " VALUES ($1, $2, now(), now(), 'task', $3)",
            ws,
            uuid.uuid4(),
            shared,
        )
    )
    asyncio.run(
        _run(
            empty_database,
            "INSERT INTO tickets (workspace_id, id, created_at, updated_at, subject, assignee_id)"
            " VALUES ($1, $2, now(), now(), 'T', $3)",
            ws,
            uuid.uuid4(),
            assignee,
        )
    )

    # the operator's command, whose output is where the count must show
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env["CRM_DATABASE_URL"] = empty_database
    done = subprocess.run(
        [sys.executable, "-m", "crm_api", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert '4 placeholder members ("Imported owner")' in done.stderr, done.stderr

    members = asyncio.run(_run(empty_database, "SELECT workspace_id, id, name, active, email FROM members"))
    assert {(m["workspace_id"], m["id"]) for m in members} == {
        (ws, shared),
        (ws, lone),
        (ws, assignee),
        (other_ws, shared),
    }
    assert {m["name"] for m in members} == {"Imported owner"}
    assert all(m["active"] and m["email"].endswith("@members.invalid") for m in members)
