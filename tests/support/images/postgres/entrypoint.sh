#!/bin/sh
# First start: a cluster with the POSTGRES_* user, password and database, as the real image makes it.
set -eu
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    password_file="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > "$password_file"
    initdb --username="$user" --pwfile="$password_file" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    database="${POSTGRES_DB:-$user}"
    if [ "$database" != postgres ]; then
        # the name is the operator's own; quoted as an SQL identifier
        quoted="\"$(printf '%s' "$database" | sed 's/"/""/g')\""
        echo "CREATE DATABASE $quoted OWNER \"$user\"" | postgres --single -j -D "$PGDATA" postgres >/dev/null
    fi
fi
exec "$@"
