-- The windows each key relies on, recorded with the keys so that a workflow started again from
-- PostgreSQL plans exactly what the one before it promised. Times are the commit times of the changes.
ALTER TABLE signing_keys
  -- When the propagation gate first found the next key at every JWKS URL.
  ADD COLUMN listed_at     timestamptz,
  -- The earliest the next key may sign: every verifier's cached JWKS from before its listing has expired.
  ADD COLUMN promotable_at timestamptz,
  -- The longest token lifetime the key signed under.
  ADD COLUMN token_ttl_ms  bigint,
  -- When a demoted key stops verifying; a policy change may move it later, never earlier.
  ADD COLUMN grace_ends_at timestamptz;
