import { constants, createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JWK } from 'jose';
import { Pool } from 'pg';
import { Registry } from 'prom-client';
import { parseKekRing } from '../src/crypto/kek';
import type { SigningAlgorithm } from '../src/domain/algorithms';
import { createLogger } from '../src/logger';
import { startSignerServer } from '../src/signer/server';
import { serveTarget } from './target-process';

/**
 * The signing server under load, in a process of its own. `keyturn`: startSignerServer on the bench's
 * database. `baseline`: a bare node:http server that reads the same JSON body, adds iat and exp to the
 * claims, and signs them with crypto.sign and the same private key: no authentication, no rate limit,
 * no ttl rule, no metrics, no key rotation to follow.
 */
export type SignerTargetMessage =
  | { mode: 'keyturn'; databaseUrl: string; kek: string; issuer: string }
  | { mode: 'baseline'; alg: SigningAlgorithm; kid: string; privateJwk: JWK };

/** crypto.sign as JWS wants it for each algorithm the bench loads. */
function signature(alg: SigningAlgorithm, key: KeyObject): (input: Buffer) => Buffer {
  if (alg === 'ES256') return (input) => sign('sha256', input, { key, dsaEncoding: 'ieee-p1363' });
  if (alg === 'RS256') return (input) => sign('sha256', input, { key, padding: constants.RSA_PKCS1_PADDING });
  return (input) => sign(null, input, key);
}

function startBaseline(message: Extract<SignerTargetMessage, { mode: 'baseline' }>) {
  const signWith = signature(message.alg, createPrivateKey({ key: message.privateJwk, format: 'jwk' }));
  const header = Buffer.from(JSON.stringify({ alg: message.alg, kid: message.kid, typ: 'JWT' })).toString('base64url');
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const { claims } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { claims: Record<string, unknown> };
      const iat = Math.floor(Date.now() / 1000);
      const exp = iat + 300;
      const input = `${header}.${Buffer.from(JSON.stringify({ ...claims, iat, exp })).toString('base64url')}`;
      const token = `${input}.${signWith(Buffer.from(input)).toString('base64url')}`;
      const body = JSON.stringify({ token, kid: message.kid, iat, exp });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
}

serveTarget(async (message: SignerTargetMessage) => {
  if (message.mode === 'keyturn') {
    const pool = new Pool({ connectionString: message.databaseUrl, max: 4 });
    const server = await startSignerServer({
      port: 0,
      pool,
      kekRing: parseKekRing(message.kek),
      registry: new Registry(),
      logger: createLogger({ level: 'silent' }),
      defaultRate: { perSecond: 1_000_000, burst: 1_000_000 },
      issuer: message.issuer,
    });
    return { url: server.url, close: () => server.close().finally(() => pool.end()) };
  }
  const server = startBaseline(message);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
});
