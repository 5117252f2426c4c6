#!/bin/sh
# Entrypoint of the paas Postgres image: makes the cluster on the (empty) volume
# the first time, then runs postgres in the foreground. Inside the container the
# unix socket trusts local users (paasd execs psql/pg_dump there when the
# database is on paasd's node); over the network every connection needs the
# password. POSTGRES_PASSWORD_FILE (a Swarm secret) gives the postgres role its
# password from the start, so paasd can reach a database on any node over the
# overlay network.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    pwfile="--pwfile=$POSTGRES_PASSWORD_FILE"
  fi
  initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 ${pwfile:+"$pwfile"} >/dev/null
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "host all all ::/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
