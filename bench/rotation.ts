import { performance } from 'node:perf_hooks';
import { Pool } from 'pg';
import { Registry } from 'prom-client';
import { parseKekRing, type KekRing } from '../src/crypto/kek';
import { KeyRing } from '../src/issuer/key-ring';
import { startJwksServer } from '../src/jwks/server';
import { createLogger } from '../src/logger';
import { KeyStore } from '../src/store/key-store';
import { startTestDevStack } from '../test/helpers/dev-stack';
import { KeySetDriver, testPolicy } from '../test/helpers/key-sets';
import { median, ms, sleep } from './stats';
import type { Row } from './table';

const STORE_SAMPLES = 10;
const TEMPORAL_SAMPLES = 5;
const POLL_MS = 1;
const GIVE_UP_MS = 10_000;
const TARGET_MS = 1_000;
/** How long a key ring may still sign with a revoked key after the revocation's commit is acknowledged. */
const REVOCATION_TARGET_MS = 100;

const logger = createLogger({ level: 'silent' });

/** The kid in a compact JWS's protected header. */
function kidOf(token: string): string {
  return (JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString('utf8')) as { kid: string })
    .kid;
}

async function jwksKids(url: string): Promise<string[]> {
  const response = await fetch(url);
  const { keys } = (await response.json()) as { keys: { kid: string }[] };
  return keys.map((k) => k.kid);
}

/** Polls every POLL_MS until `probe` is true; the performance.now() it first was. */
async function when(probe: () => Promise<boolean>, what: string): Promise<number> {
  const deadline = performance.now() + GIVE_UP_MS;
  for (;;) {
    if (await probe()) return performance.now();
    if (performance.now() > deadline) throw new Error(`timed out after ${GIVE_UP_MS} ms waiting for ${what}`);
    await sleep(POLL_MS);
  }
}

/** The JWKS server and the key ring of one database, as an issuer and its verifiers' JWKS endpoint run them. */
async function startObservers(pool: Pool, kekRing: KekRing, keySetId: string) {
  const jwks = await startJwksServer({ port: 0, host: '127.0.0.1', pool, registry: new Registry(), logger });
  const ring = await KeyRing.open({
    pool,
    kekRing,
    keySetIds: [keySetId],
    logger,
    publicUrl: 'https://keys.example.com',
  });
  const jwksUrl = `${jwks.url}/keysets/${keySetId}/jwks.json`;
  return {
    inJwks: async (kid: string) => (await jwksKids(jwksUrl)).includes(kid),
    newInJwks: async (known: readonly string[]) => (await jwksKids(jwksUrl)).find((kid) => !known.includes(kid)),
    jwksKids: () => jwksKids(jwksUrl),
    signingKid: async () => kidOf(await ring.sign(keySetId, { sub: 'bench' })),
    /** The kid the ring signs with now; undefined while it has no active key (ERR_NO_ACTIVE_KEY). */
    signingKidIfAny: () => ring.sign(keySetId, { sub: 'bench' }).then(kidOf, () => undefined),
    async close() {
      await ring.close();
      await jwks.close();
    },
  };
}

function latencyRow(measure: string, samplesMs: number[], note: string, targetMs = TARGET_MS): Row {
  const mid = median(samplesMs);
  return {
    measure,
    result: `median ${ms(mid)}, max ${ms(Math.max(...samplesMs))}`,
    reference: note,
    figure: `n = ${samplesMs.length}`,
    target: `median < ${ms(targetMs)}`,
    pass: mid < targetMs,
  };
}

/**
 * Without Temporal: KeyStore.addNextKey (the next key's commit) until the JWKS server serves its
 * kid, KeyStore.promoteNextKey until the key ring signs with it, then KeyStore.revokeKey until the ring
 * stops signing with it and the JWKS drops it. Timed from the moment the call returns (the commit is
 * acknowledged); the observers hear of it through LISTEN/NOTIFY.
 */
export async function benchStoreRotation(pool: Pool, store: KeyStore, kekRing: KekRing): Promise<Row[]> {
  const keySet = await KeySetDriver.register(store, 'bench-rotation-store', testPolicy('ES256'));
  await keySet.rotate();
  const observers = await startObservers(pool, kekRing, keySet.keySetId);
  try {
    const toJwks: number[] = [];
    const toRing: number[] = [];
    const revokedInRing: number[] = [];
    const revokedInJwks: number[] = [];
    for (let i = 0; i < STORE_SAMPLES; i += 1) {
      const kid = await keySet.addNext();
      const committed = performance.now();
      toJwks.push((await when(() => observers.inJwks(kid), `${kid} in the JWKS`)) - committed);
      await keySet.promote(kid);
      const promoted = performance.now();
      toRing.push(
        (await when(async () => (await observers.signingKidIfAny()) === kid, `the ring to sign with ${kid}`)) -
          promoted,
      );
      await keySet.revoke(kid);
      const revoked = performance.now();
      revokedInRing.push(
        (await when(async () => (await observers.signingKidIfAny()) !== kid, `the ring to stop signing with ${kid}`)) -
          revoked,
      );
      revokedInJwks.push(
        (await when(async () => !(await observers.inJwks(kid)), `${kid} to leave the JWKS`)) - revoked,
      );
    }
    return [
      latencyRow('Rotation, no Temporal: addNextKey commit → kid in JWKS', toJwks, 'polled every 1 ms over HTTP'),
      latencyRow(
        'Rotation, no Temporal: promoteNextKey commit → ring signs with kid',
        toRing,
        'polled every 1 ms with KeyRing.sign',
      ),
      latencyRow(
        'Revocation, no Temporal: revokeKey commit → ring stops signing with kid',
        revokedInRing,
        'polled every 1 ms with KeyRing.sign',
        REVOCATION_TARGET_MS,
      ),
      latencyRow(
        'Revocation, no Temporal: revokeKey commit → kid out of JWKS',
        revokedInJwks,
        'polled every 1 ms over HTTP',
      ),
    ];
  } finally {
    await observers.close();
  }
}

/**
 * The `keyturn rotate` path: a Temporal dev server and the worker (startTestDevStack), a key set
 * started through KeySetClient, then KeySetClient.rotate. Timed from the call; the JWKS and the
 * ring are polled while the Update runs, and must end on the kid the Update answers with.
 */
export async function benchTemporalRotation(): Promise<Row[]> {
  const running = await startTestDevStack('bench');
  const { stack } = running;
  const pool = new Pool({ connectionString: stack.databaseUrl, max: 5 });
  const kekRing = parseKekRing(running.kek);
  const keySetId = 'bench-rotation-temporal';
  let observers: Awaited<ReturnType<typeof startObservers>> | undefined;
  try {
    await stack.keySets.start(keySetId, testPolicy('ES256'));
    await stack.keySets.waitForActiveKid(keySetId);
    observers = await startObservers(pool, kekRing, keySetId);
    const o = observers;
    const toJwks: number[] = [];
    const toRing: number[] = [];
    const toAnswer: number[] = [];
    for (let i = 0; i < TEMPORAL_SAMPLES; i += 1) {
      const known = await o.jwksKids();
      const signing = await o.signingKid();
      const started = performance.now();
      const [result, jwksAt, ringAt] = await Promise.all([
        // At once: this measures how fast a promotion reaches the JWKS and the ring, not the wait for verifiers' caches.
        stack.keySets
          .rotate(keySetId, { reason: 'benchmark', requestedBy: 'bench', immediately: true })
          .then((r) => ({ r, at: performance.now() })),
        when(async () => (await o.newInJwks(known)) !== undefined, 'a new kid in the JWKS'),
        when(async () => (await o.signingKid()) !== signing, 'the ring to sign with a new kid'),
      ]);
      const newKid = result.r.kid;
      if (!(await o.inJwks(newKid)) || (await o.signingKid()) !== newKid) {
        throw new Error(
          `after rotate, the JWKS or the ring does not have the kid the Update answered with (${newKid})`,
        );
      }
      toAnswer.push(result.at - started);
      toJwks.push(jwksAt - started);
      toRing.push(ringAt - started);
    }
    return [
      latencyRow(
        'Rotation via Temporal: KeySetClient.rotate → new kid in JWKS',
        toJwks,
        `rotate answered: median ${ms(median(toAnswer))}`,
      ),
      latencyRow(
        'Rotation via Temporal: KeySetClient.rotate → ring signs with new kid',
        toRing,
        'polled every 1 ms with KeyRing.sign',
      ),
    ];
  } finally {
    await observers?.close();
    await pool.end();
    await running.stop();
  }
}
