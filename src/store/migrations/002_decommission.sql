-- A decommissioned key set winds down and is not restarted by the supervisor.
ALTER TABLE key_sets ADD COLUMN decommissioned_at timestamptz;
