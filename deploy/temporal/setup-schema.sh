#!/bin/sh
# Brings Temporal's two databases (created by deploy/postgres/init-databases.sh) to the schema of
# this Temporal version, before the server starts. Safe to run again: setup-schema leaves a schema
# already there alone, and update-schema applies only the versions a database lacks.
# Run by docker-compose.yml's temporal-schema service (admin-tools image) and by `keyturn stack`,
# which says where PostgreSQL and the schema are and puts the tool on PATH. temporal-sql-tool reads
# the password from SQL_PASSWORD.
set -eu
: "${SQL_PASSWORD:?is not set: see .env.example}"

schema_dir=${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}
for target in temporal:temporal temporal_visibility:visibility; do
  database=${target%%:*}
  schema=${target#*:}
  echo "schema of $database"
  sql="temporal-sql-tool --plugin postgres12 --ep ${SQL_HOST:-postgres} -p ${SQL_PORT:-5432} -u temporal --db $database"
  $sql setup-schema -v 0.0
  $sql update-schema -d "$schema_dir/$schema/versioned"
done
