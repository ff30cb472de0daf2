#!/bin/sh
# The reports at the issue's size: a fresh database, 1,000,000 contacts, 200,000 sales deals with their stage
# history, 100,000 tickets and 500,000 shop orders with their deals (SQL, through the database's triggers),
# the kept tables checked against a recomputation, VACUUM ANALYZE, one API worker, then each report timed
# from one client.
#   bench/reports.sh [contacts] [deals] [runs] [orders]
set -eu
cd "$(dirname "$0")/.."
CONTACTS=${1:-1000000}; DEALS=${2:-200000}; RUNS=${3:-20}; ORDERS=${4:-500000}; PORT=${BENCH_PORT:-18915}
PG=${BENCH_PG:-postgresql://postgres@127.0.0.1:5432}
DB=crm_bench_reports
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
export CRM_DATABASE_URL="postgresql+asyncpg://${PG#postgresql://}/$DB" CRM_RUN_DISPATCHER=false
CRM_SECRET_KEY=$(crm-api secrets new-key); export CRM_SECRET_KEY
KEY=$(crm-api create-key --workspace bench --scopes 'reports:read,deals:read,contacts:read' 2>/dev/null | tail -1)
python bench/seed.py --direct "$PG/$DB" --workspace bench --count "$CONTACTS"
python bench/reports.py seed --db "$PG/$DB" --deals "$DEALS" --orders "$ORDERS"
python bench/reports.py check --db "$PG/$DB"
crm-api serve --port $PORT --workers 1 >/tmp/crm-bench-reports.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
python bench/reports.py measure --port $PORT --key "$KEY" --runs "$RUNS" --json /tmp/crm-bench-reports.json
