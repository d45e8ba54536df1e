-- The incidents key set workflows hold open (a step that keeps failing, a promotion waiting at the
-- propagation gate), copied from their state by the alert activity as they open and resolve, so that
-- they are counted (keyturn_open_incidents) like the supervisor's in alert_incidents. The workflow's
-- state stays what decides its alerts: a row here is only what the last alert recorded.
CREATE TABLE key_set_incidents (
  key_set_id  text NOT NULL REFERENCES key_sets (id),
  -- step-failure, propagation:<kid>
  incident    text NOT NULL,
  -- The step the last firing alert was about.
  step        text NOT NULL,
  -- The workflow's clock, as the incident opened.
  opened_at   timestamptz NOT NULL,
  PRIMARY KEY (key_set_id, incident)
);
