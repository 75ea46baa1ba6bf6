#!/usr/bin/env bash
# The load table of docs/BENCHMARKS.md "## Load": one session, back to back, 100 clients each:
#   sqlite  one sync-server on SQLite (one tenant)
#   one     two sync-servers on one fresh PostgreSQL database, all clients in one tenant
#   twenty  the same, the clients spread over 20 tenants (sync-load-test --tenants 20)
#
# Usage (after `cargo build --release -p sync-cli`), from the repository root:
#     bash benches/load.sh                      # the three, in that order, 60 s each
#     MODES="twenty one sqlite" bash benches/load.sh   # another order (the rounds rotate it)
# Settings: SECS (default 60), POOL (--postgres-pool-size, default 16), TAG (the output folder
# name), OUT_ROOT (default /tmp/sync-load), BIN (default ${CARGO_TARGET_DIR:-target}/release).
# Each run's report goes to $OUT_ROOT/$TAG/<mode>.txt; `uptime` before each run to .../uptime;
# the servers' CPU time (ps) and PostgreSQL's backends' CPU time (the postmaster's reaped
# children: every backend of the cluster that exited during the run) to .../cpu; every 10 s,
# pg_stat_activity of the database by wait event to .../activity-<mode> and `top` to
# .../activity-<mode>.top. PostgreSQL comes from .ci/postgres.sh (a fresh database per run);
# `flock /tmp/measure.lock` keeps timing runs of several people on one machine apart.
set -u
cd "$(dirname "$0")/.."
B=${BIN:-${CARGO_TARGET_DIR:-target}/release}
SECS=${SECS:-60}
POOL=${POOL:-16}
TAG=${TAG:-$(date +%H%M%S)}
OUT=${OUT_ROOT:-/tmp/sync-load}/$TAG
mkdir -p "$OUT"
PSQL=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)/psql
SRV_TOKENS=$(for i in $(seq 0 99); do printf -- '--token load:load-token-%05d ' $i; done)
SRV_TOKENS20=$(for i in $(seq 0 99); do printf -- '--token load%d:load-token-%05d ' $((i % 20)) $i; done)
CLI_TOKENS=$(for i in $(seq 0 99); do printf -- '--token load-token-%05d ' $i; done)

sample() { # db url, file: pg_stat_activity every 10 s while the load runs
  for _ in $(seq 1 $((SECS / 10))); do
    sleep 10
    top -b -n 1 -w 160 | sed -n 7,22p >> "$2.top"
    [ -n "$1" ] && "$PSQL" "$1" -X -At -c "SELECT now()::time(0), coalesce(wait_event_type,'-'), coalesce(wait_event,'-'), state, count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1,2,3,4 ORDER BY 5 DESC" >> "$2" 2>&1
  done
}
# CPU seconds of PostgreSQL's exited children (backends), from the postmaster's cutime+cstime
pgcpu() { local pm; pm=$(head -1 "${SYNC_PG_DIR:-/tmp/sync-engine-postgres}/data/postmaster.pid"); awk -v hz=$(getconf CLK_TCK) '{print ($16+$17)/hz}' /proc/$pm/stat; }

MODES=${MODES:-sqlite one twenty}
run_sqlite() {
echo "sqlite: $(uptime)" | tee -a "$OUT/uptime"
D=$(mktemp -d)
$B/sync-server --listen 127.0.0.1:18090 --db "$D/server.db" $SRV_TOKENS > "$OUT/s0.log" 2>&1 & S0=$!
sleep 3
sample "" "$OUT/activity-sqlite" & SP=$!
flock /tmp/measure.lock $B/sync-load-test --clients 100 --seconds $SECS --server http://127.0.0.1:18090 $CLI_TOKENS > "$OUT/sqlite.txt" 2>&1
echo "sqlite server cpu: $(ps -o cputime= -p $S0)" >> "$OUT/cpu"
kill $SP 2>/dev/null
kill $S0; wait $S0 2>/dev/null; rm -rf "$D"
}
run_pg() {
  mode=$1
  DB=load_${TAG}_$mode
  eval "$(SYNC_PG_DB=$DB bash .ci/postgres.sh 2>/dev/null)"
  URL=$SYNC_TEST_POSTGRES_URL
  if [ $mode = one ]; then T=$SRV_TOKENS; EXTRA=""; else T=$SRV_TOKENS20; EXTRA="--tenants 20"; fi
  echo "pg-$mode: $(uptime)" | tee -a "$OUT/uptime"
  $B/sync-server --listen 127.0.0.1:18091 --postgres "$URL" --postgres-pool-size $POOL $T > "$OUT/s1-$mode.log" 2>&1 & S1=$!
  $B/sync-server --listen 127.0.0.1:18092 --postgres "$URL" --postgres-pool-size $POOL $T > "$OUT/s2-$mode.log" 2>&1 & S2=$!
  sleep 3
  PG0=$(pgcpu)
  sample "$URL" "$OUT/activity-$mode" & SP=$!
  flock /tmp/measure.lock $B/sync-load-test --clients 100 --seconds $SECS --server http://127.0.0.1:18091 --server http://127.0.0.1:18092 $EXTRA $CLI_TOKENS > "$OUT/pg-$mode.txt" 2>&1
  echo "pg-$mode servers cpu: $(ps -o cputime= -p $S1) $(ps -o cputime= -p $S2)" >> "$OUT/cpu"
  kill $SP 2>/dev/null
  kill $S1 $S2; wait $S1 $S2 2>/dev/null
  sleep 1
  echo "pg-$mode postgres backends cpu: $(awk -v a="$(pgcpu)" -v b="$PG0" 'BEGIN {print a - b}') s (all backends of the cluster that exited during the run)" >> "$OUT/cpu"
}
for m in $MODES; do
  if [ $m = sqlite ]; then run_sqlite; else run_pg $m; fi
done
echo "done $(uptime)" >> "$OUT/uptime"
