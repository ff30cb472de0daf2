#!/bin/sh
# Two versions of the code side by side in one run, so the machine's drift hits both alike:
#   bench/compare.sh OLD_TREE NEW_TREE [rounds] [seconds per op]
# A tree is a checkout (git worktree) of the project. Each round runs bench/run.sh (this tree's seeding and
# load generators) against a server started from each tree's src/, alternating which goes first. Prints
# each operation's median req/s over the rounds for both, and their ratio.
set -eu
cd "$(dirname "$0")/.."
OLD=$1; NEW=$2; ROUNDS=${3:-2}; SECS=${4:-10}
OUT=${BENCH_OUT:-/tmp/crm-compare}
rm -rf "$OUT"; mkdir -p "$OUT"
run() {  # label tree round
  echo "== $1 (round $3): $2" >&2
  PYTHONPATH="$2/src" sh bench/run.sh 2 16 "$SECS" >"$OUT/$1-$3.log" 2>&1
  cp /tmp/crm-bench-2-workers.json "$OUT/$1-$3-load.json"
  if [ "${BENCH_SALES:-1}" = 1 ]; then cp /tmp/crm-bench-sales-2-workers.json "$OUT/$1-$3-sales.json"; fi
}
i=1
while [ "$i" -le "$ROUNDS" ]; do
  if [ $((i % 2)) -eq 1 ]; then run old "$OLD" "$i"; run new "$NEW" "$i"
  else run new "$NEW" "$i"; run old "$OLD" "$i"; fi
  i=$((i + 1))
done
python bench/compare_table.py "$OUT"
