#!/usr/bin/env bash
# Starts a throw-away PostgreSQL on loopback for the store-postgres tests, and prints the URL.
#
# Usage (a developer, or CI as root on a fresh Debian machine):
#
#     eval "$(bash .ci/postgres.sh)"
#     cargo test -p store-postgres
#
# What it does, each step skipped when already done (running it twice is fine):
#   1. installs PostgreSQL from Debian's packages (apt-get) if no server binaries are found
#      (that step needs root);
#   2. creates a private cluster with initdb in $SYNC_PG_DIR (default /tmp/sync-engine-postgres),
#      owned by the `postgres` user when run as root, else by the calling user;
#   3. starts it with pg_ctl, listening on 127.0.0.1:$SYNC_PG_PORT only (default 55432, so it
#      never clashes with a system PostgreSQL on 5432); its Unix socket lives in the cluster dir;
#   4. creates the login role $SYNC_PG_USER (default sync_test, password $SYNC_PG_PASSWORD,
#      default sync_test) and the database $SYNC_PG_DB (default sync_test) owned by it;
#   5. checks a password login over TCP, then prints on stdout
#          export SYNC_TEST_POSTGRES_URL=postgres://USER:PASS@127.0.0.1:PORT/DB
#      (and appends it to $GITHUB_ENV when that is set). Everything else goes to stderr.
#
# When PostgreSQL cannot be installed, initialised, started or reached, it exits non-zero
# with a message saying why (and the end of the server log): CI must never skip these tests.
#
# Stop the cluster:   pg_ctl -D /tmp/sync-engine-postgres/data stop   (as its owner)
# Remove everything:  stop it, then rm -rf /tmp/sync-engine-postgres
#
# The cluster is for tests: loopback only, password auth over TCP, trust on its private socket.
set -euo pipefail

DIR="${SYNC_PG_DIR:-/tmp/sync-engine-postgres}"
PORT="${SYNC_PG_PORT:-55432}"
DB_USER="${SYNC_PG_USER:-sync_test}"
DB_PASS="${SYNC_PG_PASSWORD:-sync_test}"
DB_NAME="${SYNC_PG_DB:-sync_test}"
DATA="$DIR/data"
SOCK="$DIR/sock"
LOG="$DIR/server.log"

say() { echo "postgres.sh: $*" >&2; }
die() {
    echo "postgres.sh: ERROR: $*" >&2
    if [[ -f "$LOG" ]]; then
        echo "postgres.sh: last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2 || true
    fi
    exit 1
}

for name in DB_USER DB_NAME; do
    [[ "${!name}" =~ ^[a-z_][a-z0-9_]*$ ]] || die "$name='${!name}' must be a plain lower-case SQL identifier"
done
[[ "$DB_PASS" =~ ^[A-Za-z0-9_.~-]+$ ]] || die "SYNC_PG_PASSWORD may only hold letters, digits and _ . ~ - (it goes into a URL unescaped)"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "SYNC_PG_PORT='$PORT' is not a port number"

# 1. Server binaries (Debian keeps them in /usr/lib/postgresql/<version>/bin).
find_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
        echo "$d"
    elif command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}
PG_BIN=$(find_bin)
if [[ -z "$PG_BIN" ]]; then
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed and this is not root: run 'sudo apt-get install -y postgresql', or run this script as root"
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is missing: install PostgreSQL (initdb, pg_ctl, psql) yourself"
    say "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq postgresql postgresql-client >&2 || die "apt-get install postgresql failed"
    PG_BIN=$(find_bin)
    [[ -n "$PG_BIN" ]] || die "PostgreSQL was installed but initdb/pg_ctl were not found under /usr/lib/postgresql/*/bin"
fi
PSQL="$PG_BIN/psql"
[[ -x "$PSQL" ]] || PSQL=$(command -v psql) || die "psql not found (install postgresql-client)"
say "using $PG_BIN ($("$PG_BIN/postgres" --version 2>/dev/null || echo 'unknown version'))"

# Who owns and runs the cluster: PostgreSQL refuses to run as root.
if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres \
        || die "no 'postgres' user to run the server as, and it could not be created"
    OWNER=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    OWNER=$(id -un)
    as_owner() { "$@"; }
fi

# 2. The cluster.
mkdir -p "$DIR" "$SOCK" || die "cannot create $DIR"
if [[ $(id -u) -eq 0 ]]; then
    chown "$OWNER": "$DIR" "$SOCK" || die "cannot give $DIR to $OWNER"
fi
chmod 700 "$DIR" "$SOCK"
if [[ ! -f "$DATA/PG_VERSION" ]]; then
    say "creating a cluster in $DATA (owner $OWNER)"
    rm -rf "$DATA"
    pwfile="$DIR/.initdb-pw"
    as_owner bash -c "umask 077; head -c 24 /dev/urandom | base64 > '$pwfile'" || die "cannot write $pwfile"
    as_owner "$PG_BIN/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; die "initdb failed (see above)"; }
    rm -f "$pwfile"
fi

# 3. Start it unless it is already running.
if as_owner "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    say "cluster in $DATA is already running"
else
    say "starting PostgreSQL on 127.0.0.1:$PORT"
    as_owner touch "$LOG" 2>/dev/null || true
    as_owner "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c max_connections=300 -c fsync=off -c synchronous_commit=off" \
        start >&2 || die "PostgreSQL did not start on 127.0.0.1:$PORT (is the port taken by another program? see the log below)"
fi
ready=0
for _ in $(seq 1 30); do
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; then ready=1; break; fi
    sleep 1
done
[[ $ready -eq 1 ]] || die "PostgreSQL does not accept connections on 127.0.0.1:$PORT after 30 s"

# 4. Role and database (as the cluster superuser over the private socket).
su_sql() { as_owner "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres -tA "$@"; }
if [[ "$(su_sql -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" == 1 ]]; then
    su_sql -c "ALTER ROLE $DB_USER WITH LOGIN PASSWORD '$DB_PASS'" >/dev/null || die "cannot update role $DB_USER"
else
    say "creating role $DB_USER"
    su_sql -c "CREATE ROLE $DB_USER WITH LOGIN CREATEDB PASSWORD '$DB_PASS'" >/dev/null || die "cannot create role $DB_USER"
fi
if [[ "$(su_sql -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]]; then
    say "creating database $DB_NAME"
    su_sql -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >/dev/null || die "cannot create database $DB_NAME"
fi

# 5. The URL, checked the way the tests connect: TCP on loopback with the password.
URL="postgres://$DB_USER:$DB_PASS@127.0.0.1:$PORT/$DB_NAME"
PGPASSWORD="$DB_PASS" "$PSQL" -X -q -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d "$DB_NAME" -tAc "SELECT 1" >/dev/null \
    || die "PostgreSQL is running but $DB_USER cannot log in to $DB_NAME over 127.0.0.1:$PORT"
say "ready: $DB_USER@127.0.0.1:$PORT/$DB_NAME"
if [[ -n "${GITHUB_ENV:-}" ]]; then
    echo "SYNC_TEST_POSTGRES_URL=$URL" >>"$GITHUB_ENV"
fi
echo "export SYNC_TEST_POSTGRES_URL=$URL"
