#!/bin/sh
# Fresh database, API with 2 workers (no dispatcher), 100,000 contacts, then load at 16 clients; then the
# same contact operations on the floor app (bench/floor.py) and crm-api's ratio to it (BENCH_FLOOR=0 skips).
#   bench/run.sh [workers] [clients] [seconds]
# BENCH_DB/BENCH_PORT and BENCH_FLOOR_DB/BENCH_FLOOR_PORT name other databases and ports (default crm_bench
# on 8077, crm_floor on 8078) and BENCH_OUT its files (/tmp/crm-bench...), so two runs keep apart.
set -eu
cd "$(dirname "$0")/.."
WORKERS=${1:-2}; CLIENTS=${2:-16}; SECONDS_PER_OP=${3:-10}; PORT=${BENCH_PORT:-8077}
FLOOR_PORT=${BENCH_FLOOR_PORT:-8078}; DB=${BENCH_DB:-crm_bench}; FLOOR_DB=${BENCH_FLOOR_DB:-crm_floor}
OUT=${BENCH_OUT:-${BENCH_TMP:-/tmp/crm-bench}}   # its logs and results: $OUT-serve.log, $OUT-2-workers.json, ...
PG=${BENCH_PG:-postgresql://postgres@127.0.0.1:5432}
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
export CRM_DATABASE_URL="postgresql+asyncpg://${PG#postgresql://}/$DB" CRM_RUN_DISPATCHER=false
CRM_SECRET_KEY=$(crm-api secrets new-key); export CRM_SECRET_KEY   # a fresh database: any key will do
# the quotas stay on (their cost is part of what is measured) but far above what one key sends here;
# BENCH_REDIS=redis://127.0.0.1:6379/0 keeps them in Redis, as several API hosts would
export CRM_RATE_LIMIT_KEY_PER_SECOND=1000000 CRM_RATE_LIMIT_KEY_BURST=2000000 \
  CRM_RATE_LIMIT_WORKSPACE_PER_SECOND=1000000 CRM_RATE_LIMIT_WORKSPACE_BURST=2000000
if [ -n "${BENCH_REDIS:-}" ]; then export CRM_REDIS_URL="$BENCH_REDIS" CRM_REDIS_KEY_PREFIX="crm-bench-$$"; fi
# each worker's metrics in a file of its own here: load.py reads the requests each worker served
export CRM_METRICS_DIR="${OUT}-metrics-$$"
KEY=$(crm-api create-key --workspace bench --scopes '*' 2>/dev/null | tail -1)
crm-api serve --port $PORT --workers "$WORKERS" >${OUT}-serve.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$CRM_METRICS_DIR"' EXIT
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
# 100,000 contacts with SQL (seconds), then 5,000 more through the batch endpoint to time it
python bench/seed.py --direct "$PG/$DB" --workspace bench --count 100000
python bench/seed.py --port $PORT --key "$KEY" --count 5000
psql "$PG/$DB" -qc "ANALYZE"   # fresh statistics, as autovacuum would give a live table
python bench/load.py --port $PORT --key "$KEY" --clients "$CLIENTS" --seconds "$SECONDS_PER_OP" \
  --json "${OUT}-$WORKERS-workers.json" --metrics-dir "$CRM_METRICS_DIR"
if [ "${BENCH_SALES:-1}" = 1 ]; then   # BENCH_SALES=0 skips the deal operations
  python bench/sales.py --port $PORT --key "$KEY" --clients "$CLIENTS" --seconds "$SECONDS_PER_OP" \
    --json "${OUT}-sales-$WORKERS-workers.json"
fi
kill $SERVER; wait $SERVER 2>/dev/null || true
# The floor (bench/floor.py): the same operations on a bare FastAPI + asyncpg app, same workers and clients,
# so each figure above can be read against what the stack costs on the day's machine.
if [ "${BENCH_FLOOR:-1}" = 1 ]; then
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $FLOOR_DB" -c "CREATE DATABASE $FLOOR_DB"
  python bench/floor.py seed --url "$PG/$FLOOR_DB" --count 100000 --key floor-key
  # its workers each on a socket of their own too (BENCH_FLOOR_SHARED=1: uvicorn's one shared socket)
  if [ "${BENCH_FLOOR_SHARED:-0}" = 1 ]; then
    FLOOR_DATABASE_URL="$PG/$FLOOR_DB" python -m uvicorn floor:app --app-dir bench --workers "$WORKERS" \
      --port $FLOOR_PORT --no-access-log >${OUT}-floor.log 2>&1 &
  else
    FLOOR_DATABASE_URL="$PG/$FLOOR_DB" python bench/floor.py serve --workers "$WORKERS" --port $FLOOR_PORT \
      >${OUT}-floor.log 2>&1 &
  fi
  SERVER=$!
  until curl -s "http://127.0.0.1:$FLOOR_PORT/v1/contacts?limit=1" -H 'Authorization: Bearer floor-key' \
      >/dev/null; do sleep 0.2; done
  python bench/load.py --port $FLOOR_PORT --key floor-key --clients "$CLIENTS" --seconds "$SECONDS_PER_OP" \
    --json "${OUT}-floor-$WORKERS-workers.json"
  python bench/ratio.py "${OUT}-$WORKERS-workers.json" "${OUT}-floor-$WORKERS-workers.json"
fi
