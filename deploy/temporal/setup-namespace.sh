#!/bin/sh
# Creates keyturn's namespace and registers the search attributes keyturn's workflows set (the
# Web UI lists and filters key sets by them). Each step is a no-op once done, so this runs on every
# `docker compose up`. The temporal CLI reads TEMPORAL_ADDRESS itself.
set -eu
: "${TEMPORAL_ADDRESS:?}" "${TEMPORAL_NAMESPACE:?}"

# Tries "$@" every 2 s, for up to 2 minutes: the frontend's port opens before the cluster answers,
# and a namespace just created takes a few seconds to reach every service.
retry() {
  attempt=1
  until "$@"; do
    if [ "$attempt" -ge 60 ]; then
      echo "gave up after $attempt attempts: $*" >&2
      return 1
    fi
    attempt=$((attempt + 1))
    sleep 2
  done
}

retry temporal operator cluster health
temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1 ||
  temporal operator namespace create --namespace "$TEMPORAL_NAMESPACE"
# The same names and types `keyturn dev` registers (SEARCH_ATTRIBUTES in src/dev/temporal-dev-server.ts).
retry temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" \
  --name KeySetId --type Keyword \
  --name ActiveKid --type Keyword \
  --name NextTransitionAt --type Datetime
