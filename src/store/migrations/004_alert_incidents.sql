-- The supervisor's incidents: a broken invariant, or a workflow it had to start again. Each of its
-- five-minute rounds sees them anew; this table makes one lasting problem one incident, announced
-- when it opens, reminded of, and resolved once a round no longer sees it, across worker restarts.
-- (A key set workflow keeps its own incidents in its state: those must be announced even while
-- PostgreSQL is what fails.) Rows stay after resolution, as the incident history.
CREATE TABLE alert_incidents (
  id             bigserial PRIMARY KEY,
  key_set_id     text NOT NULL REFERENCES key_sets (id),
  -- e.g. invariant:NO_ACTIVE_KEY, invariant:TIME_MISMATCH:<kid>, workflow-stopped
  incident       text NOT NULL,
  -- Times are the supervisor workflow's clock, as the decisions were made.
  opened_at      timestamptz NOT NULL,
  notified_at    timestamptz NOT NULL,
  notifications  int NOT NULL,
  resolved_at    timestamptz,
  -- The latest firing alert (summary, kid, code, error): what the resolved message says recovered.
  alert          jsonb NOT NULL
);

-- At most one open incident per key set and incident key.
CREATE UNIQUE INDEX alert_incidents_open ON alert_incidents (key_set_id, incident) WHERE resolved_at IS NULL;
