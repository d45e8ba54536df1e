/**
 * JWK members that hold secret material (RFC 7518 §6, RFC 8037 §2, RFC 9964 §3): never in a published
 * key, a log line, a workflow's history or a response.
 */
export const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const;
