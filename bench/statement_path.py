"""What one statement costs on each execution path, on this machine, in one run.

    python bench/statement_path.py [--url postgresql://postgres@127.0.0.1:5432/postgres] [--n 5000]

The same statement (a contact by workspace and id, from an empty table, so the server's share is small
and alike) run three ways, each on one connection checked out once:
- driver: asyncpg with the SQL text (the floor);
- compiled: the Core statement compiled once by ``crm_api.sql`` and run on the driver connection (what
  the API does);
- sqlalchemy: ``AsyncConnection.execute`` of the same Core statement (SQLAlchemy's full path, with its
  compiled cache warm).
Prints wall and CPU microseconds per statement for each.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import select

from crm_api import sql
from crm_api.db import create_engine, driver_connection


async def _time(n: int, run: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    for _ in range(200):  # warm: prepared statements, caches
        await run()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await run()
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def main(url: str, n: int) -> None:
    engine = create_engine(url, 2)
    contacts = sql.table("contacts")
    stmt = select(contacts.c.id, contacts.c.email).where(
        contacts.c.workspace_id == sql.param("ws"), contacts.c.id == sql.param("id")
    )
    compiled = sql.Compiled(stmt)
    ws, oid = uuid.uuid4(), uuid.uuid4()
    async with engine.connect() as conn:
        driver = await driver_connection(conn)
        text = "SELECT id, email FROM contacts WHERE workspace_id = $1 AND id = $2"
        paths: dict[str, Callable[[], Awaitable[object]]] = {
            "driver": lambda: driver.fetchrow(text, ws, oid),
            "compiled": lambda: compiled.fetchrow(driver, ws=ws, id=oid),
            "sqlalchemy": lambda: conn.execute(stmt, {"ws": ws, "id": oid}),
        }
        print(f"{n} statements each; microseconds per statement")
        print("| path | wall | CPU |")
        print("|---|---:|---:|")
        for name, run in paths.items():
            wall, cpu = await _time(n, run)
            print(f"| {name} | {wall:.0f} | {cpu:.0f} |")
        await conn.rollback()
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/crm_bench")
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.n))
