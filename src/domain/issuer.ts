/**
 * What decides the issuer of a key set whose policy names none: the deployment's settings, the same
 * in every process of it (the JWKS server's discovery documents and every signing path).
 */
export interface DeploymentIssuer {
  /** KEYTURN_ISSUER: the issuer of every key set whose policy names none. */
  issuer?: string;
  /** KEYTURN_PUBLIC_URL: the base URL verifiers reach the JWKS server at, without a trailing slash. */
  publicUrl?: string;
  /** KEYTURN_DEFAULT_KEYSET: the key set discovered at the public URL itself (default `default`). */
  defaultKeySetId?: string;
}

export const DEFAULT_KEY_SET_ID = 'default';

/**
 * The `iss` of a key set's tokens and the issuer of its discovery document, one rule for both so they
 * never disagree (an OIDC client that discovers the key set refuses a token whose `iss` differs): the
 * policy's `issuer`, else the deployment's, else the URL its discovery document is found under (OpenID
 * Discovery: `<issuer>/.well-known/openid-configuration`), the public URL itself for the default key
 * set and `<public URL>/keysets/<id>` for the others. Undefined when none of these is known.
 */
export function keySetIssuer(
  keySetId: string,
  policyIssuer: string | undefined,
  deployment: DeploymentIssuer,
): string | undefined {
  // An empty setting (KEYTURN_ISSUER= in an env file) names nothing.
  if (policyIssuer) return policyIssuer;
  if (deployment.issuer) return deployment.issuer;
  if (!deployment.publicUrl) return undefined;
  const base = deployment.publicUrl.replace(/\/+$/, '');
  return keySetId === (deployment.defaultKeySetId ?? DEFAULT_KEY_SET_ID)
    ? base
    : `${base}/keysets/${encodeURIComponent(keySetId)}`;
}

/**
 * A deployment's issuer settings as its configuration gives them. Without KEYTURN_PUBLIC_URL, the public
 * URL is the loopback URL of the JWKS server's port (PORT), where `keyturn dev` and `keyturn serve`
 * without --host listen; none for port 0, which is picked only when listening.
 */
export function deploymentIssuerOf(config: {
  issuer?: string;
  publicUrl?: string;
  jwksPort: number;
  defaultKeySetId: string;
}): DeploymentIssuer {
  const publicUrl = config.publicUrl ?? (config.jwksPort === 0 ? undefined : `http://127.0.0.1:${config.jwksPort}`);
  return { issuer: config.issuer, publicUrl, defaultKeySetId: config.defaultKeySetId };
}
