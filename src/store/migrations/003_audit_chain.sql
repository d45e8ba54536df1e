-- The audit trail becomes a hash chain per key set (src/store/audit-chain.ts says what is hashed and
-- what that protects against). The hashes are computed in TypeScript, not here: jsonb details would
-- have to be encoded byte for byte as the application encodes them.

ALTER TABLE audit_events
  ADD COLUMN seq       bigint,
  ADD COLUMN prev_hash text,
  ADD COLUMN hash      text,
  -- NOT VALID: enforced on every row written or changed from now on, so an unchained event cannot be
  -- added; the rows already here are chained right after this file by chainUnchainedEvents (migrate.ts),
  -- in this migration's transaction.
  ADD CONSTRAINT audit_events_chained CHECK (seq IS NOT NULL AND hash IS NOT NULL) NOT VALID;

-- One event per position: two writers that did not serialise on the key set would collide here.
CREATE UNIQUE INDEX audit_events_chain ON audit_events (key_set_id, seq);

-- The chain's head, moved in the same transaction as each event: without it, deleting the newest
-- events would leave a shorter chain that still verifies.
ALTER TABLE key_sets
  ADD COLUMN audit_head_seq  bigint NOT NULL DEFAULT 0,
  ADD COLUMN audit_head_hash text;
