"""crm-api against the floor, per operation: ``python bench/ratio.py CRM_JSON FLOOR_JSON``."""

import json
import sys


def main(crm_path: str, floor_path: str) -> None:
    with open(crm_path) as f:
        crm = json.load(f)
    with open(floor_path) as f:
        floor = json.load(f)
    print("| operation | crm-api req/s | floor req/s | crm-api / floor | crm-api p99 ms | floor p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for op, r in crm.items():
        if op not in floor:
            continue
        f_ = floor[op]
        print(
            f"| {op} | {r['rps']:,.0f} | {f_['rps']:,.0f} | {r['rps'] / f_['rps']:.2f} | "
            f"{r['p99_ms']:.1f} | {f_['p99_ms']:.1f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
