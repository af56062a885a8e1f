#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests: `start` creates a cluster in a temporary directory,
# listening on 127.0.0.1 at a free port and on a unix socket there, and prints
#   export DATABASE_URL=postgres://tally@127.0.0.1:PORT/tally
#   export TALLY_PG_DIR=/tmp/tally-pg-XXXX
# for `eval`; `restart [SECONDS]` (with TALLY_PG_DIR set) stops it, waits that long and
# starts it again; `kill` kills it (SIGKILL, for fault tests); `stop` stops it and removes
# the directory. TALLY_PG_HOST listens on another local address than 127.0.0.1.
# As root, the server runs as an unprivileged user (postgres, else nobody) via runuser.
# Tests run it with fsync=off (a throwaway cluster need not survive a power cut);
# TALLY_PG_FSYNC=on keeps PostgreSQL's default, for benchmarks.
# When the PostgreSQL binaries are missing it installs them (apt-get install postgresql)
# when it can, or stops with a message that says what to do.
set -euo pipefail

find_bin() {
  local name=$1
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  local found
  found=$(ls /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$found" ] && echo "$found"
}

ensure_binaries() {
  if [ -n "$(find_bin initdb)" ] && [ -n "$(find_bin pg_ctl)" ]; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "postgres.sh: PostgreSQL not found; installing it with apt-get" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  if [ -z "$(find_bin initdb)" ]; then
    echo "postgres.sh: initdb and pg_ctl are needed: install PostgreSQL (e.g. apt-get install postgresql) or set DATABASE_URL" >&2
    exit 2
  fi
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$owner" -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

case "${1:-}" in
  start)
    ensure_binaries
    initdb=$(readlink -f "$(find_bin initdb)"); pg_ctl=$(readlink -f "$(find_bin pg_ctl)")
    owner=$(id -un)
    if [ "$(id -u)" = 0 ]; then owner=$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody); fi
    dir=$(mktemp -d /tmp/tally-pg-XXXXXX)
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown "$owner" "$dir"
    port=$(free_port)
    host=${TALLY_PG_HOST:-127.0.0.1}
    as_owner "$initdb" -D "$dir/data" -U tally --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    if [ "$host" != 127.0.0.1 ]; then echo "host all all $host/32 trust" >>"$dir/data/pg_hba.conf"; fi
    echo "-c listen_addresses=$host -p $port -k $dir -c fsync=${TALLY_PG_FSYNC:-off} -c max_connections=200" \
      >"$dir/options"
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/options")" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$(dirname "$initdb")/createdb" -h "$dir" -p "$port" -U tally tally
    echo "export DATABASE_URL=postgres://tally@$host:$port/tally"
    echo "export TALLY_PG_DIR=$dir"
    ;;
  restart)
    # What `--chaos store-restart` runs: the same cluster stopped (fast: sessions are
    # cut), down for ${2:-0} seconds, and started again with the options it had.
    dir=${TALLY_PG_DIR:?set TALLY_PG_DIR (printed by start)}
    owner=$(stat -c %U "$dir")
    pg_ctl=$(find_bin pg_ctl)
    # (A server killed by `kill` is not running: nothing to stop.)
    as_owner "$pg_ctl" -D "$dir/data" status >/dev/null 2>&1 && as_owner "$pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    sleep "${2:-0}"
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(cat "$dir/options")" start >/dev/null \
      || { tail -n 20 "$dir/server.log" >&2; exit 1; }
    ;;
  kill)
    # For fault tests: the server and its sessions killed at once (SIGKILL), as a crash of
    # its host would; `restart` starts it again.
    dir=${TALLY_PG_DIR:?set TALLY_PG_DIR (printed by start)}
    pid=$(head -n 1 "$dir/data/postmaster.pid")
    kill -KILL "$pid"
    pkill -KILL -P "$pid" || true
    while kill -0 "$pid" 2>/dev/null || pgrep -P "$pid" >/dev/null; do sleep 0.05; done
    ;;
  stop)
    dir=${TALLY_PG_DIR:?set TALLY_PG_DIR (printed by start)}
    owner=$(stat -c %U "$dir")
    as_owner "$(find_bin pg_ctl)" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: eval \"\$(scripts/postgres.sh start)\"; …; scripts/postgres.sh stop" >&2
    exit 2
    ;;
esac
