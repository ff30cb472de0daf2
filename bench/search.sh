#!/bin/sh
# GET /v1/search at 1,000,000 contacts: a fresh database, contacts and companies seeded with SQL, one API
# worker, then each query timed from one client.   bench/search.sh [contacts] [runs]
set -eu
cd "$(dirname "$0")/.."
CONTACTS=${1:-1000000}; RUNS=${2:-20}; PORT=${BENCH_PORT:-18916}
PG=${BENCH_PG:-postgresql://postgres@127.0.0.1:5432}
DB=crm_bench_search
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
export CRM_DATABASE_URL="postgresql+asyncpg://${PG#postgresql://}/$DB" CRM_RUN_DISPATCHER=false
CRM_SECRET_KEY=$(crm-api secrets new-key); export CRM_SECRET_KEY
KEY=$(crm-api create-key --workspace bench --scopes 'search:read,contacts:read,companies:read,deals:read,tickets:read' 2>/dev/null | tail -1)
python bench/search.py seed --db "$PG/$DB" --count "$CONTACTS"
crm-api serve --port $PORT --workers 1 >/tmp/crm-bench-search.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.2; done
python bench/search.py measure --port $PORT --key "$KEY" --runs "$RUNS"
