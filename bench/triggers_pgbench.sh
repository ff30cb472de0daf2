#!/bin/sh
# The same writes at the database alone (bench/README, i15w): pgbench, CLIENTS clients, SECS s per script,
# databases alternated ROUNDS times; the databases are triggers_compare.sh's (100,000 seeded contacts).
#   bench/triggers_pgbench.sh crm_i15w_old crm_i15w_base crm_i15w_new
set -eu
cd "$(dirname "$0")"
PG=${BENCH_PG:-postgresql://postgres@127.0.0.1:5432}
CLIENTS=${CLIENTS:-8}; SECS=${SECS:-10}; ROUNDS=${ROUNDS:-2}
for db in "$@"; do
  psql "$PG/$db" -qc "CREATE TABLE IF NOT EXISTS bench_ids AS
    SELECT row_number() OVER (ORDER BY id) AS n, workspace_id, id FROM contacts WHERE email LIKE 'seed-%'" \
    -c "CREATE UNIQUE INDEX IF NOT EXISTS bench_ids_n ON bench_ids (n)"
done
for r in $(seq 1 "$ROUNDS"); do
  for script in create_lead update_name; do
    for db in "$@"; do
      tps=$(pgbench -n -c "$CLIENTS" -j 2 -T "$SECS" -f "pgbench/$script.sql" "$PG/$db" 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p')
      echo "round $r $script $db tps=$tps $(uptime | sed 's/.*load average/load/')"
    done
  done
done
