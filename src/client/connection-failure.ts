import { isIP } from 'node:net';
import tls from 'node:tls';
import type { TemporalProfile } from '../runtime/temporal-profile';
import type { TemporalConnectionOptions, TemporalTarget } from './connect';

const PERMISSION_DENIED = 7;
const UNAVAILABLE = 14;
const UNAUTHENTICATED = 16;
const REFUSED = 'connection refused';
const CLIENT_CERTIFICATE = 'TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH';
const PROBE_TIMEOUT_MS = 3_000;
// Verification failures a CA of keyturn's own (TEMPORAL_TLS_SERVER_CA_CERT_PATH) fixes.
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
]);

/**
 * A failed connection to Temporal as one line that says what to set. A refused credential shows in
 * the gRPC status; for the rest, keyturn makes a TLS handshake of its own (probeTls), because the
 * SDK's errors hide its outcome: grpc-js reports an untrusted server, or a server that refused the
 * client certificate during the handshake, only as a missed deadline.
 */
export async function explainConnectionFailure(
  target: TemporalTarget,
  options: TemporalConnectionOptions,
  cause: unknown,
): Promise<Error> {
  const where = `Temporal at ${target.address} (${target.origin})`;
  const refusal = grpcRefusal(cause);
  if (refusal?.code === PERMISSION_DENIED) {
    return new Error(
      `${where} refused keyturn access to namespace "${target.namespace}" ("${refusal.message}"): ` +
        'check TEMPORAL_NAMESPACE (or --namespace), and what the client certificate or API key may do there',
      { cause },
    );
  }
  if (refusal)
    return new Error(
      `${where} refused keyturn's credentials ("${refusal.message}"): ${credentialsHint(target.profile)}`,
      { cause },
    );
  const message = cause instanceof Error ? cause.message : String(cause);
  const finding = /connection refused|ECONNREFUSED/i.test(message) ? REFUSED : await probeTls(options);
  if (finding !== undefined && finding !== REFUSED)
    return new Error(`cannot connect to ${where}: ${finding}`, { cause });
  const reason = finding ?? (/deadline/i.test(message) ? 'no answer within 5 seconds' : message);
  return new Error(
    `cannot reach ${where}: ${reason}. Start one with \`keyturn dev\`, or set TEMPORAL_ADDRESS to a running server`,
    { cause },
  );
}

/** Whether an error met on an open connection is one explainConnectionFailure explains: unavailable, or refused. */
export function isConnectionFailure(error: unknown): boolean {
  for (let e = error; e instanceof Error; e = e.cause) {
    if ((e as { code?: unknown }).code === UNAVAILABLE && typeof (e as { details?: unknown }).details === 'string')
      return true;
  }
  return grpcRefusal(error) !== undefined;
}

/** UNAUTHENTICATED or PERMISSION_DENIED anywhere in the cause chain, with the server's message. */
function grpcRefusal(error: unknown): { code: number; message: string } | undefined {
  for (let e = error; e instanceof Error; e = e.cause) {
    const { code, details } = e as { code?: unknown; details?: unknown };
    if ((code === UNAUTHENTICATED || code === PERMISSION_DENIED) && typeof details === 'string')
      return { code, message: details };
    // The worker's native connection puts the status in its message, in tonic's words.
    const native =
      /code: '(The request does not have valid authentication credentials|The caller does not have permission)[^']*', message: "([^"]*)"/.exec(
        e.message,
      );
    if (native)
      return { code: native[1].startsWith('The caller') ? PERMISSION_DENIED : UNAUTHENTICATED, message: native[2] };
  }
  return undefined;
}

function credentialsHint(profile: TemporalProfile | undefined): string {
  const hints = [
    profile?.hasClientCertificate &&
      `check that ${CLIENT_CERTIFICATE} hold a certificate the server trusts and its key`,
    profile?.hasApiKey && 'check TEMPORAL_API_KEY (not shown here)',
  ].filter(Boolean);
  return hints.length > 0 ? hints.join(', and ') : `set ${CLIENT_CERTIFICATE} for mTLS, or TEMPORAL_API_KEY`;
}

/**
 * A TLS handshake with the server made as the connection made it (same CA, client certificate and
 * server name), then a wait for the server's first bytes (an HTTP/2 server sends its SETTINGS at
 * once), because with TLS 1.3 a server refuses a client certificate only after the client's side of
 * the handshake is done. Without TLS configured, whether the server speaks TLS. Says what went
 * wrong, or undefined when nothing did.
 */
function probeTls(options: TemporalConnectionOptions): Promise<string | undefined> {
  const [, host, port] = /^\[?(.*?)\]?:(\d+)$/.exec(options.address) ?? [];
  const config = options.tls === true ? {} : options.tls || undefined;
  return new Promise((resolve) => {
    const socket = tls.connect({
      host,
      port: Number(port),
      servername: config?.serverNameOverride ?? (isIP(host) ? undefined : host),
      ca: config?.serverRootCACertificate && Buffer.from(config.serverRootCACertificate),
      cert: config?.clientCertPair && Buffer.from(config.clientCertPair.crt),
      key: config?.clientCertPair && Buffer.from(config.clientCertPair.key),
      rejectUnauthorized: config !== undefined,
      ALPNProtocols: ['h2'],
    });
    const timer = setTimeout(() => done(undefined), PROBE_TIMEOUT_MS);
    function done(finding: string | undefined) {
      clearTimeout(timer);
      socket.destroy();
      resolve(finding);
    }
    let handshaken = false;
    socket.once('secureConnect', () => {
      if (!config)
        return done(
          'it expects TLS: set TEMPORAL_TLS=true (and TEMPORAL_TLS_SERVER_CA_CERT_PATH if a private CA signed its certificate)',
        );
      handshaken = true;
    });
    socket.once('data', () => done(undefined));
    // Some servers refuse a client certificate by hanging up without an alert.
    const hungUp = () =>
      handshaken
        ? `it hung up right after the TLS handshake, as on a refused client certificate: set ${CLIENT_CERTIFICATE} to a certificate it trusts and its key`
        : undefined;
    socket.once('close', () => done(hungUp()));
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') return done(REFUSED);
      done(config ? (explainTlsError(error, config.serverNameOverride ?? host) ?? hungUp()) : undefined);
    });
  });
}

function explainTlsError(error: NodeJS.ErrnoException, serverName: string): string | undefined {
  const code = error.code ?? '';
  if (UNTRUSTED.has(code)) {
    return `its TLS certificate is not trusted (${error.message}): set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the certificate of the CA that signed it`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `its TLS certificate is not issued to ${serverName} (${error.message}): set TEMPORAL_TLS_SERVER_NAME to a name it is issued to`;
  }
  const alert = /^ERR_SSL_(?:SSLV3|TLSV1|TLSV13)_ALERT_(\w+)$/.exec(code)?.[1];
  if (alert && /CERTIFICATE|UNKNOWN_CA|HANDSHAKE_FAILURE|ACCESS_DENIED/.test(alert)) {
    return `it refused the TLS handshake (alert "${alert.toLowerCase().replaceAll('_', ' ')}"): set ${CLIENT_CERTIFICATE} to a certificate it trusts and its key`;
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
    return 'it does not speak TLS: check the address, or set TEMPORAL_TLS=false if the server takes plaintext';
  }
  return undefined;
}
