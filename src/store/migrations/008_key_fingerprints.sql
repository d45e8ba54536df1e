-- What keyturn last wrote of each key, so that `verify` and the supervisor can tell from one query
-- which key sets' rows were changed by anything else (a hand-edited row, a restored backup) and
-- compare only those with their workflow one by one. A key set workflow learns its keys only from
-- keyturn's own writes, so a key whose row still matches its fingerprint is the key its workflow holds.
CREATE FUNCTION keyturn_key_fingerprint(k signing_keys) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT md5(concat_ws('|', k.kid, k.alg, k.state, k.public_jwk::text, k.private_key IS NOT NULL,
    -- Epoch numbers, not timestamptz text, which follows the session's TimeZone and DateStyle.
    extract(epoch FROM k.created_at), coalesce(extract(epoch FROM k.listed_at)::text, '-'),
    coalesce(extract(epoch FROM k.promotable_at)::text, '-'), coalesce(extract(epoch FROM k.activated_at)::text, '-'),
    coalesce(k.token_ttl_ms::text, '-'), coalesce(extract(epoch FROM k.demoted_at)::text, '-'),
    coalesce(extract(epoch FROM k.grace_ends_at)::text, '-'), coalesce(extract(epoch FROM k.retired_at)::text, '-'),
    coalesce(extract(epoch FROM k.destroyed_at)::text, '-'), coalesce(extract(epoch FROM k.revoked_at)::text, '-')))
$$;

ALTER TABLE signing_keys ADD COLUMN written_fingerprint text;
-- Keys stored before this migration are taken as keyturn wrote them.
UPDATE signing_keys k SET written_fingerprint = keyturn_key_fingerprint(k);
