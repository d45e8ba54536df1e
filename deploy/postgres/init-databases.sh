#!/bin/sh
# Run by the postgres image once, when its data volume is first initialised
# (/docker-entrypoint-initdb.d): a role and databases for Temporal, a role and a database for
# keyturn. Each role owns only its own databases and nobody else may connect to them, so keyturn's
# credentials cannot read Temporal's tables, nor Temporal's keyturn's sealed keys.
# keyturn's database is used by four roles: `keyturn` owns the schema (the `migrate` service);
# keyturn_worker, keyturn_jwks and keyturn_signer get their rights from `keyturn migrate` (CONNECT
# included): rows to read and write for the worker, the published keys only for the JWKS server, the
# keys and the signing clients for the signer.
set -eu
: "${TEMPORAL_DB_PASSWORD:?is not set: see .env.example}"
: "${KEYTURN_DB_PASSWORD:?is not set: see .env.example}"
: "${KEYTURN_WORKER_DB_PASSWORD:?is not set: see .env.example}"
: "${KEYTURN_JWKS_DB_PASSWORD:?is not set: see .env.example}"
: "${KEYTURN_SIGNER_DB_PASSWORD:?is not set: see .env.example}"

# psql quotes :'name' as a literal itself, so the passwords need no escaping here.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
  -v temporal_password="$TEMPORAL_DB_PASSWORD" -v keyturn_password="$KEYTURN_DB_PASSWORD" \
  -v keyturn_worker_password="$KEYTURN_WORKER_DB_PASSWORD" -v keyturn_jwks_password="$KEYTURN_JWKS_DB_PASSWORD" \
  -v keyturn_signer_password="$KEYTURN_SIGNER_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
REVOKE CONNECT ON DATABASE temporal, temporal_visibility FROM PUBLIC;

CREATE ROLE keyturn LOGIN PASSWORD :'keyturn_password';
CREATE DATABASE keyturn OWNER keyturn;
REVOKE CONNECT ON DATABASE keyturn FROM PUBLIC;
CREATE ROLE keyturn_worker LOGIN PASSWORD :'keyturn_worker_password';
CREATE ROLE keyturn_jwks LOGIN PASSWORD :'keyturn_jwks_password';
CREATE ROLE keyturn_signer LOGIN PASSWORD :'keyturn_signer_password';
SQL
