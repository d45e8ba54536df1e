-- Where each key's private half is held: sealed in this table under a KEK (the default, and every key
-- before this migration), in AWS KMS, or on a PKCS#11 token. For the last two the row keeps no private
-- part at all: only the backend's settings when the key was generated and its handle there (a KMS key
-- ARN, a token object's id), neither of them secret, and when the backend confirmed the private half
-- destroyed (or, for KMS, scheduled for deletion).
ALTER TABLE signing_keys
  ADD COLUMN custody jsonb NOT NULL DEFAULT '{"backend": "sealed"}' CHECK (jsonb_typeof(custody->'backend') = 'string'),
  ADD COLUMN custody_handle text,
  ADD COLUMN custody_released_at timestamptz,
  ADD CHECK (CASE custody->>'backend' WHEN 'sealed' THEN custody_handle IS NULL AND custody_released_at IS NULL
    ELSE private_key IS NULL AND custody_handle IS NOT NULL END),
  -- A destroyed key is gone from its custody too; a revoked one stops signing first and is released right after.
  ADD CHECK (state <> 'destroyed' OR custody_handle IS NULL OR custody_released_at IS NOT NULL);

-- The fingerprint covers the custody columns too. concat_ws skips nulls, so a sealed key's fingerprint
-- is what it was: rows written before this migration still match, and rows changed since still do not.
CREATE OR REPLACE FUNCTION keyturn_key_fingerprint(k signing_keys) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT md5(concat_ws('|', k.kid, k.alg, k.state, k.public_jwk::text, k.private_key IS NOT NULL,
    extract(epoch FROM k.created_at), coalesce(extract(epoch FROM k.listed_at)::text, '-'),
    coalesce(extract(epoch FROM k.promotable_at)::text, '-'), coalesce(extract(epoch FROM k.activated_at)::text, '-'),
    coalesce(k.token_ttl_ms::text, '-'), coalesce(extract(epoch FROM k.demoted_at)::text, '-'),
    coalesce(extract(epoch FROM k.grace_ends_at)::text, '-'), coalesce(extract(epoch FROM k.retired_at)::text, '-'),
    coalesce(extract(epoch FROM k.destroyed_at)::text, '-'), coalesce(extract(epoch FROM k.revoked_at)::text, '-'),
    CASE WHEN k.custody->>'backend' <> 'sealed' THEN k.custody::text END, k.custody_handle,
    extract(epoch FROM k.custody_released_at)::text))
$$;
