import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DescribeKeyCommand, KMSClient, ListKeysCommand, ListResourceTagsCommand } from '@aws-sdk/client-kms';
import { importJWK, jwtVerify } from 'jose';
import { AwsKmsCustody } from '../../src/custody/aws-kms';
import type { CustodyKey, HeldKey, SignatureFunction } from '../../src/custody/key-custody';
import { jwkThumbprint } from '../../src/crypto/kid';
import type { SigningAlgorithm } from '../../src/domain/algorithms';
import { KeyturnError } from '../../src/domain/errors';
import { startMotoServer, type MotoServer } from '../helpers/moto';
import { freePort } from '../helpers/ports';

const DAY_MS = 86_400_000;

let moto: MotoServer;
let custody: AwsKmsCustody;
/** The test's own view of KMS, to check what the backend left there. */
let kms: KMSClient;

beforeAll(async () => {
  moto = await startMotoServer();
  custody = new AwsKmsCustody(moto.clientOptions);
  kms = new KMSClient(moto.clientOptions);
}, 600_000); // a cold machine installs moto from PyPI first (about a minute)

afterAll(async () => {
  await custody?.close();
  kms?.destroy();
  await moto?.stop();
});

/** A compact JWS over `claims`, signed through the custody's signature function. */
async function signJwt(sign: SignatureFunction, key: CustodyKey, claims: object): Promise<string> {
  const encode = (part: object) => Buffer.from(JSON.stringify(part)).toString('base64url');
  const signingInput = `${encode({ alg: key.alg, kid: key.kid, typ: 'JWT' })}.${encode(claims)}`;
  const signature = await sign(Buffer.from(signingInput, 'ascii'));
  return `${signingInput}.${signature.toString('base64url')}`;
}

function held(key: CustodyKey, keySetId: string): HeldKey {
  return { keySetId, kid: key.kid, alg: key.alg, handle: key.handle };
}

async function keyCount(): Promise<number> {
  return (await kms.send(new ListKeysCommand({}))).Keys?.length ?? 0;
}

/**
 * A loopback server in front of moto that lets `fault` answer a KMS operation (named as in X-Amz-Target,
 * e.g. TagResource) in its stead, and passes every other request through: KMS failing partway.
 */
async function kmsInFrontOfMoto(fault: (operation: string, response: ServerResponse) => boolean): Promise<Server> {
  const target = new URL(moto.endpoint);
  const server = createServer((incoming: IncomingMessage, response) => {
    const operation = String(incoming.headers['x-amz-target']).replace(/^TrentService\./, '');
    if (fault(operation, response)) return;
    const forwarded = request(
      {
        host: target.hostname,
        port: target.port,
        path: incoming.url,
        method: incoming.method,
        headers: incoming.headers,
      },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    incoming.pipe(forwarded);
  });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  return server;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((closed) => server.close(closed));
}

function custodyThrough(server: Server): AwsKmsCustody {
  const { port } = server.address() as AddressInfo;
  return new AwsKmsCustody({ ...moto.clientOptions, endpoint: `http://127.0.0.1:${port}` });
}

describe.each<SigningAlgorithm>(['ES256', 'RS256', 'PS256'])('%s', (alg) => {
  const keySetId = `payments-${alg.toLowerCase()}`;
  let key: CustodyKey;

  beforeAll(async () => {
    key = await custody.generate(alg, { keySetId });
  });

  test('the key is named by the thumbprint of its public JWK, which holds public members only', () => {
    expect(key.alg).toBe(alg);
    expect(key.kid).toBe(jwkThumbprint(key.publicJwk));
    expect(key.publicJwk).toMatchObject({ kid: key.kid, alg, use: 'sig', kty: alg === 'ES256' ? 'EC' : 'RSA' });
    expect(Object.keys(key.publicJwk).sort()).toEqual(
      alg === 'ES256' ? ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'] : ['alg', 'e', 'kid', 'kty', 'n', 'use'],
    );
    expect(key.handle).toMatch(/^arn:aws:kms:us-east-1:\d+:key\//);
  });

  test('a JWT signed in KMS verifies with jose against the public JWK, a long one (sent as a digest) too', async () => {
    const sign = await custody.signer(held(key, keySetId));
    const publicKey = await importJWK(key.publicJwk, alg);
    const token = await signJwt(sign, key, { sub: 'alice', iss: 'https://issuer.example' });
    const { payload, protectedHeader } = await jwtVerify(token, publicKey, { algorithms: [alg] });
    expect(payload.sub).toBe('alice');
    expect(protectedHeader.kid).toBe(key.kid);
    if (alg === 'ES256') expect(Buffer.from(token.split('.')[2], 'base64url')).toHaveLength(64);
    // Past KMS's 4096 bytes for a RAW message.
    const long = await signJwt(sign, key, { sub: 'bob', groups: Array.from({ length: 400 }, (_, i) => `group-${i}`) });
    expect(long.split('.').slice(0, 2).join('.').length).toBeGreaterThan(4096);
    expect((await jwtVerify(long, publicKey, { algorithms: [alg] })).payload.sub).toBe('bob');
  });

  test('the KMS key is tagged with its key set and kid, and described as keyturn’s', async () => {
    const { Tags } = await kms.send(new ListResourceTagsCommand({ KeyId: key.handle }));
    expect(Tags).toEqual(
      expect.arrayContaining([
        { TagKey: 'keyturn:key-set', TagValue: keySetId },
        { TagKey: 'keyturn:kid', TagValue: key.kid },
      ]),
    );
    const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: key.handle }));
    expect(KeyMetadata).toMatchObject({ KeyUsage: 'SIGN_VERIFY', Origin: 'AWS_KMS' });
    expect(KeyMetadata?.Description).toContain(keySetId);
  });

  test('KMS reports the private half non-extractable', async () => {
    await expect(custody.properties(held(key, keySetId))).resolves.toEqual({ extractable: false });
  });

  test('destroy schedules deletion 7 days out, twice is fine, and the key signs no more', async () => {
    const sign = await custody.signer(held(key, keySetId));
    await custody.destroy(held(key, keySetId));
    const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: key.handle }));
    expect(KeyMetadata?.KeyState).toBe('PendingDeletion');
    const daysOut = ((KeyMetadata?.DeletionDate?.getTime() ?? 0) - Date.now()) / DAY_MS;
    expect(daysOut).toBeGreaterThan(6.9);
    expect(daysOut).toBeLessThanOrEqual(7);
    await expect(custody.destroy(held(key, keySetId))).resolves.toBeUndefined();
    // A signer made before the deletion fails on KMS's answer; one asked for after it, at once.
    for (const attempt of [() => signJwt(sign, key, { sub: 'late' }), () => custody.signer(held(key, keySetId))]) {
      const error = await attempt().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(KeyturnError);
      expect(error).toMatchObject({ code: 'ERR_CUSTODY_KEY_MISSING', keySetId, kid: key.kid });
      expect((error as Error).message).toContain(`key ${key.kid} of key set ${keySetId}`);
    }
  });
});

test('EdDSA is refused before anything is asked of KMS, naming the key set and the algorithms it has', async () => {
  const before = await keyCount();
  const error = await custody.generate('EdDSA', { keySetId: 'edge' }).catch((caught: unknown) => caught);
  expect(error).toMatchObject({ code: 'ERR_CUSTODY_ALGORITHM_UNSUPPORTED', keySetId: 'edge', field: 'algorithm' });
  expect((error as Error).message).toMatch(/key set edge signs with EdDSA.*ES256, RS256, PS256/);
  expect(await keyCount()).toBe(before);
});

test('a key KMS does not know: destroy is done already, its properties and signer fail as a missing key', async () => {
  const unknown: HeldKey = {
    keySetId: 'orders',
    kid: 'gone',
    alg: 'ES256',
    handle: 'arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000',
  };
  await expect(custody.destroy(unknown)).resolves.toBeUndefined();
  await expect(custody.properties(unknown)).rejects.toMatchObject({ code: 'ERR_CUSTODY_KEY_MISSING', kid: 'gone' });
  await expect(custody.signer(unknown)).rejects.toMatchObject({ code: 'ERR_CUSTODY_KEY_MISSING', kid: 'gone' });
});

test('a KMS that cannot be reached fails within seconds as unavailable, naming the key set and what to check', async () => {
  const unreachable = new AwsKmsCustody({ ...moto.clientOptions, endpoint: `http://127.0.0.1:${await freePort()}` });
  try {
    const started = Date.now();
    const error = await unreachable.generate('ES256', { keySetId: 'orders' }).catch((caught: unknown) => caught);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(error).toMatchObject({ code: 'ERR_CUSTODY_UNAVAILABLE', keySetId: 'orders' });
    expect((error as Error).message).toMatch(
      /^aws-kms could not generate an ES256 key for key set orders: .*ECONNREFUSED.*check that AWS KMS is reachable.*kms:CreateKey/,
    );
    expect((error as Error).message).not.toContain(moto.clientOptions.credentials.secretAccessKey);
  } finally {
    await unreachable.close();
  }
});

test('a key KMS made before a later step failed is scheduled for deletion, so no orphan is left', async () => {
  const proxy = await kmsInFrontOfMoto((operation, response) => {
    if (operation !== 'TagResource') return false;
    response.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
    response.end(JSON.stringify({ __type: 'AccessDeniedException', message: 'not allowed to tag' }));
    return true;
  });
  const custodyTagless = custodyThrough(proxy);
  try {
    const before = new Set((await kms.send(new ListKeysCommand({}))).Keys?.map((key) => key.KeyArn));
    const error = await custodyTagless.generate('ES256', { keySetId: 'orders' }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'ERR_CUSTODY_UNAVAILABLE', keySetId: 'orders' });
    expect((error as Error).message).toMatch(/AccessDeniedException: not allowed to tag.*kms:TagResource/);
    const made = (await kms.send(new ListKeysCommand({}))).Keys?.filter((key) => !before.has(key.KeyArn)) ?? [];
    expect(made).toHaveLength(1);
    const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: made[0].KeyArn }));
    expect(KeyMetadata?.KeyState).toBe('PendingDeletion');
  } finally {
    await custodyTagless.close();
    await closeServer(proxy);
  }
});

test('a KMS that accepts the connection and never answers fails as unavailable, after its request timeouts', async () => {
  const proxy = await kmsInFrontOfMoto((operation) => operation === 'Sign');
  const hung = custodyThrough(proxy);
  try {
    const key = await hung.generate('RS256', { keySetId: 'slow' });
    const sign = await hung.signer(held(key, 'slow'));
    const started = Date.now();
    const error = await Promise.resolve(sign(Buffer.from('a.b'))).catch((caught: unknown) => caught);
    // Three attempts of 5 s each, then the step fails (and Temporal retries it).
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(error).toMatchObject({ code: 'ERR_CUSTODY_UNAVAILABLE', keySetId: 'slow', kid: key.kid });
    expect((error as Error).message).toMatch(/^aws-kms could not sign with key \S+ of key set slow: TimeoutError/);
  } finally {
    await hung.close();
    await closeServer(proxy);
  }
}, 60_000);
