-- Key sets, their signing keys and the audit trail of every change.

CREATE TABLE key_sets (
  id          text PRIMARY KEY,
  policy      jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE signing_keys (
  key_set_id        text NOT NULL REFERENCES key_sets (id),
  kid               text NOT NULL,
  alg               text NOT NULL,
  state             text NOT NULL CHECK (state IN ('next', 'active', 'grace', 'retired', 'destroyed', 'revoked')),
  public_jwk        jsonb NOT NULL,
  -- AES-256-GCM envelope of the private JWK; NULL once destroyed or revoked.
  private_key       bytea,
  kek_id            text,
  -- Lifecycle times are the workflow's clock, so they agree with its timers.
  created_at        timestamptz NOT NULL,
  activated_at      timestamptz,
  demoted_at        timestamptz,
  retired_at        timestamptz,
  destroyed_at      timestamptz,
  revoked_at        timestamptz,
  revocation_reason text,
  PRIMARY KEY (key_set_id, kid),
  CHECK ((private_key IS NULL) = (kek_id IS NULL)),
  CHECK (state NOT IN ('destroyed', 'revoked') OR private_key IS NULL)
);

-- A second active (or next) key in one key set is impossible, whatever a caller does.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (key_set_id) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (key_set_id) WHERE state = 'next';

-- Each workflow-issued change, by the id the workflow generated: a retried activity finds its
-- earlier result here and changes nothing twice.
CREATE TABLE key_operations (
  operation_id  text PRIMARY KEY,
  key_set_id    text NOT NULL REFERENCES key_sets (id),
  kind          text NOT NULL,
  result        jsonb NOT NULL,
  completed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_events (
  id            bigserial PRIMARY KEY,
  key_set_id    text NOT NULL REFERENCES key_sets (id),
  kid           text,
  event         text NOT NULL,
  from_state    text,
  to_state      text,
  trigger       text NOT NULL,
  actor         text NOT NULL,
  reason        text NOT NULL,
  operation_id  text,
  occurred_at   timestamptz NOT NULL,
  recorded_at   timestamptz NOT NULL DEFAULT now(),
  details       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_by_key_set ON audit_events (key_set_id, id);
