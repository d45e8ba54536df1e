-- Who may sign through `keyturn signer`: each client by name, the key sets it may sign for, the claims
-- pinned on its tokens, and how it proves who it is (a bearer secret, a client certificate's subject,
-- or both). Only a SHA-256 hash of a bearer secret is kept (src/signer/client-secret.ts says why that
-- hash suffices). A revoked client's row stays, so its name is not handed to another, and the audit
-- trail's events keep naming one client.
CREATE TABLE signer_clients (
  name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
  secret_hash   bytea UNIQUE CHECK (octet_length(secret_hash) = 32),
  cert_subject  text,
  key_set_ids   text[] NOT NULL CHECK (cardinality(key_set_ids) > 0),
  pinned_claims jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(pinned_claims) = 'object'),
  -- Requests a second and burst of its token bucket; null: the deployment's KEYTURN_SIGNER_RATE.
  rate_per_second double precision CHECK (rate_per_second > 0),
  burst         integer CHECK (burst > 0),
  created_at    timestamptz NOT NULL DEFAULT now(),
  created_by    text NOT NULL,
  expires_at    timestamptz,
  revoked_at    timestamptz,
  revoked_by    text,
  CHECK (secret_hash IS NOT NULL OR cert_subject IS NOT NULL)
);

-- One live client per certificate subject: a subject must name one client.
CREATE UNIQUE INDEX signer_clients_live_subject ON signer_clients (cert_subject)
  WHERE cert_subject IS NOT NULL AND revoked_at IS NULL;
