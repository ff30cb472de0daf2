"""What keeping the customers' values and purchase times (migration 0043) adds to a write that settles a
customer, at the database alone: ``settle_contact_purchases`` as migration 0037 wrote it (old) and as 0043
writes it (new), swapped in turns on one migrated database, each write in its own transaction, rolled back
(the triggers' work is done; nothing stays).

The writes: a won deal's amount changed (a PATCH's row update: ``deals_purchases_updated``), a paid order's
total changed (an order push's update: ``orders_purchases_updated``), and a pending order of a customer paid
(a push of the order paid: ``orders_purchases_updated`` too), each for customers with the most purchases
(the costliest to settle) and for customers picked at random.

    python bench/purchases_write_cost.py --db postgresql://postgres@127.0.0.1:5432/DB \\
        [--rounds 6] [--writes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import pathlib
import statistics
import time
from typing import Any

import asyncpg

_MIGRATION = (
    pathlib.Path(__file__).parent.parent
    / "src/crm_api/migrations/versions/2026_12_01_0043_customer_values_and_times.py"
)

_WRITES = {
    "won deal amount": (
        "SELECT d.id, NULL FROM deals AS d JOIN contact_purchases AS k"
        " ON k.workspace_id = d.workspace_id AND k.contact_id = d.contact_id"
        " WHERE d.workspace_id = $1 AND d.status = 'won' AND d.archived_at IS NULL"
        " AND NOT EXISTS (SELECT FROM orders AS o WHERE o.workspace_id = d.workspace_id AND o.deal_id = d.id)"
        " ORDER BY {order} LIMIT $2",
        "UPDATE deals SET amount = amount + 1 WHERE workspace_id = $1 AND id = $2 AND $3::text IS NULL",
    ),
    "paid order total": (
        "SELECT o.source, o.external_id FROM orders AS o JOIN contact_purchases AS k"
        " ON k.workspace_id = o.workspace_id AND k.contact_id = o.contact_id"
        " WHERE o.workspace_id = $1 AND o.status IN ('paid', 'fulfilled') ORDER BY {order} LIMIT $2",
        "UPDATE orders SET total = total + 1 WHERE workspace_id = $1 AND source = $2 AND external_id = $3",
    ),
    "pending order paid": (
        "SELECT o.source, o.external_id FROM orders AS o JOIN contact_purchases AS k"
        " ON k.workspace_id = o.workspace_id AND k.contact_id = o.contact_id"
        " WHERE o.workspace_id = $1 AND o.status = 'pending' ORDER BY {order} LIMIT $2",
        "UPDATE orders SET status = 'paid' WHERE workspace_id = $1 AND source = $2 AND external_id = $3",
    ),
}


def _functions() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("m0043", _MIGRATION)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"old": module._SETTLE_0037, "new": module._SETTLE}


async def _time(conn: asyncpg.Connection, ws: Any, write: str, ids: list[Any]) -> list[float]:
    took = []
    for id_ in ids:
        tx = conn.transaction()
        await tx.start()
        began = time.perf_counter()
        await conn.execute(write, ws, *id_)
        took.append((time.perf_counter() - began) * 1000)
        await tx.rollback()
    return took


async def main(db: str, rounds: int, writes: int) -> None:
    functions = _functions()
    conn = await asyncpg.connect(db)
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = 'bench'")
        times: dict[tuple[str, str, str], list[float]] = {}
        for r in range(rounds):
            for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                await conn.execute(functions[side])
                for name, (pick, write) in _WRITES.items():
                    for who, order in (("most purchases", "k.purchases DESC, 1"), ("random", "random()")):
                        ids = [tuple(row) for row in await conn.fetch(pick.format(order=order), ws, writes)]
                        times.setdefault((name, who, side), []).extend(await _time(conn, ws, write, ids))
        await conn.execute(functions["new"])
        print(f"{'write':20s} {'customers':15s} {'old p50 ms':>10s} {'new p50 ms':>10s}")
        for name in _WRITES:
            for who in ("most purchases", "random"):
                old = statistics.median(times[(name, who, "old")])
                new = statistics.median(times[(name, who, "new")])
                print(f"{name:20s} {who:15s} {old:10.2f} {new:10.2f}")
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.db, args.rounds, args.writes))
