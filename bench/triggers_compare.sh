#!/bin/sh
# Old vs new write cost through the API, alternated in one run (bench/README, i15w): each variant is a
# worktree (label=path), gets its own database (100,000 seeded contacts) and its own `crm-api serve
# --workers 2`; then ROUNDS rounds of bench/load.py create and update, variant after variant.
#   bench/triggers_compare.sh old=/work/wt/i15w-old new=/work/wt/i15w ...
# Env: PORT0 (first port, default 18991), ROUNDS (2), CLIENTS (16), SECONDS_PER_OP (10), COUNT (100000).
set -eu
cd "$(dirname "$0")/.."
BIN=/work/main/.venv/bin; PATH="$BIN:$PATH"; export PATH
PG=${BENCH_PG:-postgresql://postgres@127.0.0.1:5432}
PORT=${PORT0:-18991}; ROUNDS=${ROUNDS:-2}; CLIENTS=${CLIENTS:-16}; SECS=${SECONDS_PER_OP:-10}
COUNT=${COUNT:-100000}; OUT=${OUT:-/tmp/crm_i15w_bench}; mkdir -p "$OUT"
export CRM_RUN_DISPATCHER=false CRM_RATE_LIMIT_KEY_PER_SECOND=1000000 CRM_RATE_LIMIT_KEY_BURST=2000000 \
  CRM_RATE_LIMIT_WORKSPACE_PER_SECOND=1000000 CRM_RATE_LIMIT_WORKSPACE_BURST=2000000
CRM_SECRET_KEY=$(crm-api secrets new-key); export CRM_SECRET_KEY
PIDS=""; VARIANTS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done' EXIT
for v in "$@"; do
  label=${v%%=*}; wt=${v#*=}; db="crm_i15w_$label"
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  url="postgresql+asyncpg://${PG#postgresql://}/$db"
  CRM_DATABASE_URL=$url PYTHONPATH=$wt/src crm-api migrate >/dev/null 2>&1
  key=$(CRM_DATABASE_URL=$url PYTHONPATH=$wt/src crm-api create-key --workspace bench --scopes '*' 2>/dev/null | tail -1)
  CRM_DATABASE_URL=$url PYTHONPATH=$wt/src crm-api serve --port $PORT --workers 2 >"$OUT/$label.log" 2>&1 &
  PIDS="$PIDS $!"
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
  PYTHONPATH=$wt/src python bench/seed.py --direct "$PG/$db" --workspace bench --count "$COUNT" >/dev/null
  psql "$PG/$db" -qc "ANALYZE"
  VARIANTS="$VARIANTS $label:$PORT:$key"; PORT=$((PORT + 1))
done
for r in $(seq 1 "$ROUNDS"); do
  for v in $VARIANTS; do
    label=${v%%:*}; rest=${v#*:}; port=${rest%%:*}; key=${rest#*:}
    echo "round $r $label $(uptime | sed 's/.*load average/load average/')"
    python bench/load.py --port "$port" --key "$key" --clients "$CLIENTS" --seconds "$SECS" \
      --ops create,update --json "$OUT/$label-$r.json" | grep -E 'create|update'
  done
done
