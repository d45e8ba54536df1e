-- What the JWKS server (`keyturn serve`) reads, and all it may read: the keys it publishes and, per
-- key set, what its responses need. `keyturn migrate` grants its role (KEYTURN_JWKS_ROLE) SELECT on
-- these two views and nothing else (src/store/database-roles.ts), so code running in the JWKS server
-- reaches no sealed private key, no audit event and no other field of a policy. The views read the
-- tables with their owner's rights. Columns are named one by one, never `*`: a column added to a
-- table later stays out of them.

-- The next, active and grace keys (PUBLISHED_STATES in src/domain/lifecycle.ts), public part only.
-- security_barrier: the reader's own conditions (a function it wrote, say) run only on the rows the
-- view lets through.
CREATE VIEW published_keys WITH (security_barrier) AS
  SELECT key_set_id, kid, public_jwk, created_at
    FROM signing_keys
   WHERE state IN ('next', 'active', 'grace');

-- version: the id of the key set's latest audit event, which every change writes
-- (src/store/key-set-versions.ts); the JWKS server and key rings compare it to find what changed.
CREATE VIEW published_key_sets AS
  SELECT k.id AS key_set_id,
         (SELECT max(a.id) FROM audit_events a WHERE a.key_set_id = k.id)::text AS version,
         k.policy ->> 'algorithm' AS algorithm,
         k.policy ->> 'jwksMaxAge' AS jwks_max_age,
         k.policy ->> 'issuer' AS issuer
    FROM key_sets k;
