#!/usr/bin/env bash
# A throwaway MariaDB for the tests and benchmarks of the MySQL/MariaDB store (issue 14),
# as scripts/postgres.sh is for PostgreSQL:
#   eval "$(scripts/mariadb.sh start)"    prints
#     export MYSQL_URL=mysql://tally:tally@127.0.0.1:PORT/tally
#     export TALLY_MYSQL_DIR=/tmp/tally-mariadb-XXXX
#   scripts/mariadb.sh restart [SECONDS]  stop, wait that long, start with the same options
#   scripts/mariadb.sh kill               kill it (SIGKILL, as a host crash; for fault tests)
#   scripts/mariadb.sh stop               stop it and remove the directory
# The server listens on 127.0.0.1 (TALLY_MYSQL_HOST: another local address) at a free port and on a unix socket in its directory,
# with local_infile on (the store's bulk path is LOAD DATA LOCAL INFILE) and UTC as its
# time zone, and TLS for clients that ask ($TALLY_MYSQL_DIR/tls/ca.pem is its CA). The database's default collation is utf8mb4_general_ci (case-insensitive),
# like a typical SI database, so that the tests catch a table Tally makes without its
# binary collation. As root it runs as an unprivileged user (mysql, else nobody).
# TALLY_MYSQL_FSYNC=off trades durability for speed (innodb_flush_log_at_trx_commit=0,
# sync_binlog=0) for tests; the default keeps the server's durable settings, for benchmarks.
# When the MariaDB binaries are missing it installs them (apt-get install mariadb-server)
# when it can, or stops with a message that says what to do.
set -euo pipefail

ensure_binaries() {
  if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "mariadb.sh: MariaDB not found; installing it with apt-get" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >&2
  fi
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    echo "mariadb.sh: mariadbd and mariadb-install-db are needed: install MariaDB (apt-get install mariadb-server) or set MYSQL_URL" >&2
    exit 2
  fi
}

mariadbd_bin() { command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts the server of $dir with its saved options and waits until it answers.
launch() {
  local dir=$1
  # shellcheck disable=SC2046
  "$(mariadbd_bin)" $(cat "$dir/options") >>"$dir/server.log" 2>&1 &
  for _ in $(seq 1 600); do
    if mariadb --no-defaults -S "$dir/sock" -u root -e 'SELECT 1' >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "mariadb.sh: the server did not answer within 60 s; its log:" >&2
  tail -n 30 "$dir/server.log" >&2
  exit 1
}

shutdown() {
  local dir=$1
  mariadb-admin --no-defaults -S "$dir/sock" -u root shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 300); do
    [ -S "$dir/sock" ] || [ -e "$dir/pid" ] || return 0
    if [ -e "$dir/pid" ] && ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
}

case "${1:-}" in
  start)
    ensure_binaries
    owner=$(id -un)
    if [ "$(id -u)" = 0 ]; then owner=$(id -u mysql >/dev/null 2>&1 && echo mysql || echo nobody); fi
    dir=$(mktemp -d /tmp/tally-mariadb-XXXXXX)
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown "$owner" "$dir"
    port=$(free_port)
    host=${TALLY_MYSQL_HOST:-127.0.0.1}
    mariadb-install-db --no-defaults --user="$owner" --datadir="$dir/data" --auth-root-authentication-method=socket \
      --skip-test-db >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; exit 1; }
    # TLS for clients that ask (the store's useSSL/sslMode tests): a throwaway CA and a
    # server certificate for 127.0.0.1, localhost and $host; $dir/tls/ca.pem checks it.
    mkdir "$dir/tls"
    ( cd "$dir/tls"
      openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Tally test CA" -keyout ca-key.pem -out ca.pem
      openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server-key.pem -out server.csr
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:%s\n' "$host" >san.ext
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 -extfile san.ext \
        -out server.pem ) >"$dir/tls.log" 2>&1 || { cat "$dir/tls.log" >&2; exit 1; }
    [ "$(id -u)" = 0 ] && chown -R "$owner" "$dir/tls"
    durable=""
    if [ "${TALLY_MYSQL_FSYNC:-on}" = off ]; then durable="--innodb-flush-log-at-trx-commit=0 --sync-binlog=0"; fi
    echo "--no-defaults --user=$owner --datadir=$dir/data --socket=$dir/sock --pid-file=$dir/pid \
--bind-address=$host --port=$port --skip-name-resolve --local-infile=1 --default-time-zone=+00:00 \
--character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci --max-connections=300 --max-allowed-packet=256M \
--ssl-ca=$dir/tls/ca.pem --ssl-cert=$dir/tls/server.pem --ssl-key=$dir/tls/server-key.pem $durable" >"$dir/options"
    launch "$dir"
    mariadb --no-defaults -S "$dir/sock" -u root -e "
      CREATE DATABASE tally CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
      CREATE USER 'tally'@'$host' IDENTIFIED BY 'tally';
      CREATE USER 'tally'@'localhost' IDENTIFIED BY 'tally';
      GRANT ALL ON tally.* TO 'tally'@'$host';
      GRANT ALL ON tally.* TO 'tally'@'localhost';"
    echo "export MYSQL_URL=mysql://tally:tally@$host:$port/tally"
    echo "export TALLY_MYSQL_DIR=$dir"
    ;;
  restart)
    # For `--chaos store-restart`: the same server stopped, down ${2:-0} s, started again.
    dir=${TALLY_MYSQL_DIR:?set TALLY_MYSQL_DIR (printed by start)}
    shutdown "$dir"
    sleep "${2:-0}"
    launch "$dir"
    ;;
  kill)
    # For fault tests: the server killed at once (SIGKILL), as a crash of its host would;
    # `restart` starts it again.
    dir=${TALLY_MYSQL_DIR:?set TALLY_MYSQL_DIR (printed by start)}
    kill -KILL "$(cat "$dir/pid")"
    while kill -0 "$(cat "$dir/pid")" 2>/dev/null; do sleep 0.05; done
    ;;
  stop)
    dir=${TALLY_MYSQL_DIR:?set TALLY_MYSQL_DIR (printed by start)}
    shutdown "$dir"
    rm -rf "$dir"
    ;;
  *)
    echo "usage: eval \"\$(scripts/mariadb.sh start)\"; …; scripts/mariadb.sh stop" >&2
    exit 2
    ;;
esac
