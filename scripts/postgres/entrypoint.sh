#!/bin/sh
# Entrypoint of the paas Postgres image: makes the cluster on the (empty) volume
# the first time, then runs postgres in the foreground. Inside the container the
# unix socket trusts local users (paasd execs psql/pg_dump there); over the
# network every connection needs the password, which paasd sets through that
# socket after start-up and keeps only in its store.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "host all all ::/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
