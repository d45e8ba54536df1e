#!/bin/sh
# Brings Temporal's two databases (created by deploy/postgres/init-databases.sh) to the schema of
# this admin-tools image, before the server starts. Safe on every `docker compose up`: setup-schema
# leaves a newer schema alone, and update-schema applies only the versions a database lacks.
# temporal-sql-tool reads the password from SQL_PASSWORD.
set -eu
: "${SQL_PASSWORD:?is not set: see .env.example}"

schema_dir=/etc/temporal/schema/postgresql/v12
for target in temporal:temporal temporal_visibility:visibility; do
  database=${target%%:*}
  schema=${target#*:}
  echo "schema of $database"
  sql="temporal-sql-tool --plugin postgres12 --ep postgres -p 5432 -u temporal --db $database"
  $sql setup-schema -v 0.0
  $sql update-schema -d "$schema_dir/$schema/versioned"
done
