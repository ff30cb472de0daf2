"""Summarise a bench/compare.sh run: median req/s and p99 per operation for old and new, and new/old."""

import glob
import json
import statistics
import sys
from collections import defaultdict


def main(out: str) -> None:
    rps: dict[tuple[str, str], list[float]] = defaultdict(list)
    p99: dict[tuple[str, str], list[float]] = defaultdict(list)
    ops: list[str] = []
    for path in sorted(glob.glob(f"{out}/*-*-*.json")):
        label = path.rsplit("/", 1)[1].split("-")[0]
        with open(path) as f:
            for op, r in json.load(f).items():
                if op not in ops:
                    ops.append(op)
                rps[(label, op)].append(r["rps"])
                p99[(label, op)].append(r["p99_ms"])
    print("| operation | old req/s | new req/s | new/old | old p99 ms | new p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for op in ops:
        old, new = statistics.median(rps[("old", op)]), statistics.median(rps[("new", op)])
        print(
            f"| {op} | {old:,.0f} | {new:,.0f} | {new / old:.2f} | "
            f"{statistics.median(p99[('old', op)]):.1f} | {statistics.median(p99[('new', op)]):.1f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
