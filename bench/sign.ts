import { constants, createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { importJWK, SignJWT } from 'jose';
import type { Pool } from 'pg';
import type { KekRing } from '../src/crypto/kek';
import type { SigningAlgorithm } from '../src/domain/algorithms';
import { KeyRing } from '../src/issuer/key-ring';
import { createLogger } from '../src/logger';
import type { KeyStore } from '../src/store/key-store';
import { KeySetDriver, testPolicy } from '../test/helpers/key-sets';
import { cpuPinning } from './cpu-pinning';
import { count, median, ratio } from './stats';
import type { Row } from './table';
import { openActiveKey } from '../test/helpers/sealed-keys';

const ALGORITHMS: SigningAlgorithm[] = ['ES256', 'EdDSA', 'RS256'];
const ROUNDS = 25;
const SLICE_MS = 60;
const WARM_UP_MS = 300;
const TTL_SECONDS = 300;
/** The key sets' issuer (their policy's). */
const ISSUER = 'https://issuer.example';
/** Same claims for every variant; each adds iat and exp. The iss is the key set's: the ring checks it, and adds none. */
const CLAIMS = { iss: ISSUER, sub: 'user-1234', aud: 'api', scope: 'read write' };

/** Node's crypto.sign as TokenSigner calls it for each algorithm, on bytes prepared once. */
function rawSigner(alg: SigningAlgorithm, key: KeyObject): (input: Buffer) => Buffer {
  switch (alg) {
    case 'ES256':
      return (input) => sign('sha256', input, { key, dsaEncoding: 'ieee-p1363' });
    case 'RS256':
      return (input) => sign('sha256', input, { key, padding: constants.RSA_PKCS1_PADDING });
    case 'EdDSA':
      return (input) => sign(null, input, key);
    default:
      throw new TypeError(`no raw signer for ${alg}`);
  }
}

/**
 * Calls `op` back to back for `sliceMs`; ops per CPU second of this process. On a shared machine a slice
 * may lose the core for a while, and CPU time does not count that (wall-clock rates here varied by a
 * fifth from run to run). A synchronous op is not awaited, so that the raw figure carries no microtask
 * turn per call that it does not need.
 */
async function opsPerSecond(op: () => unknown, sliceMs: number): Promise<number> {
  let ops = 0;
  const cpuStart = process.cpuUsage();
  const end = performance.now() + sliceMs;
  while (performance.now() < end) {
    const result = op();
    if (result instanceof Promise) await result;
    ops += 1;
  }
  const cpu = process.cpuUsage(cpuStart);
  return ops / ((cpu.user + cpu.system) / 1e6);
}

type Variant = 'raw' | 'ring' | 'jose';

/**
 * KeyRing.sign against crypto.sign of one prepared signing input (header.payload with iat and exp)
 * with a KeyObject of the same private key, and against jose's SignJWT with that key imported once.
 * Each algorithm and variant runs in slices of SLICE_MS, ROUNDS times, in an order that turns each
 * round; the median slice counts.
 */
export async function benchSign(pool: Pool, store: KeyStore, kekRing: KekRing): Promise<Row[]> {
  const keySetIds = new Map<SigningAlgorithm, string>();
  for (const alg of ALGORITHMS) {
    const keySetId = `bench-sign-${alg.toLowerCase()}`;
    await (await KeySetDriver.register(store, keySetId, { ...testPolicy(alg), issuer: ISSUER })).rotate();
    keySetIds.set(alg, keySetId);
  }
  const ring = await KeyRing.open({
    pool,
    kekRing,
    keySetIds: [...keySetIds.values()],
    logger: createLogger({ level: 'silent' }),
  });
  try {
    const ops = new Map<string, () => unknown>();
    for (const alg of ALGORITHMS) {
      const keySetId = keySetIds.get(alg)!;
      const active = (await openActiveKey(store.pool, store.kekRing, keySetId))!;
      const keyObject = createPrivateKey({ key: active.privateJwk, format: 'jwk' });
      const joseKey = await importJWK(active.privateJwk, alg);
      const now = Math.floor(Date.now() / 1000);
      const header = { alg, kid: active.kid, typ: 'JWT' };
      const encode = (value: object) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
      const signingInput = Buffer.from(
        `${encode(header)}.${encode({ ...CLAIMS, iat: now, exp: now + TTL_SECONDS })}`,
        'latin1',
      );
      const raw = rawSigner(alg, keyObject);
      ops.set(`${alg}/raw`, () => raw(signingInput));
      ops.set(`${alg}/ring`, () => ring.sign(keySetId, CLAIMS, { ttl: TTL_SECONDS }));
      ops.set(`${alg}/jose`, () =>
        new SignJWT(CLAIMS).setProtectedHeader(header).setIssuedAt().setExpirationTime(`${TTL_SECONDS}s`).sign(joseKey),
      );
    }
    const variants: Variant[] = ['raw', 'ring', 'jose'];
    const samples = new Map<string, number[]>([...ops.keys()].map((name) => [name, []]));
    // One core for the whole comparison: a slice that moved to another core mid-way would be noise.
    cpuPinning?.pinSelf();
    try {
      // Warm-up: every path optimised and every key used before anything counts.
      for (const op of ops.values()) await opsPerSecond(op, WARM_UP_MS);
      for (let round = 0; round < ROUNDS; round += 1) {
        for (const alg of ALGORITHMS) {
          for (let i = 0; i < variants.length; i += 1) {
            const name = `${alg}/${variants[(i + round) % variants.length]}`;
            samples.get(name)!.push(await opsPerSecond(ops.get(name)!, SLICE_MS));
          }
        }
      }
    } finally {
      cpuPinning?.release();
    }
    const result = (alg: SigningAlgorithm, variant: Variant) => median(samples.get(`${alg}/${variant}`)!);
    // Each round's slices of one algorithm run back to back: their ratio, taken round by round, leaves
    // out what changed on the machine between rounds (a neighbour's load, the CPU's clock).
    const pairedRatio = (alg: SigningAlgorithm, variant: Variant, against: Variant) => {
      const of = samples.get(`${alg}/${variant}`)!;
      const base = samples.get(`${alg}/${against}`)!;
      return median(of.map((ops, round) => ops / base[round]));
    };
    return ALGORITHMS.map((alg) => {
      const ringToRaw = pairedRatio(alg, 'ring', 'raw');
      return {
        measure: `KeyRing.sign ${alg}: ops per CPU s`,
        result: count(result(alg, 'ring')),
        reference: `${count(result(alg, 'raw'))} (crypto.sign), ${count(result(alg, 'jose'))} (jose SignJWT)`,
        figure: `${ratio(ringToRaw)}× raw, ${ratio(pairedRatio(alg, 'ring', 'jose'))}× jose`,
        target: '≥ 0.90× raw',
        pass: ringToRaw >= 0.9,
      };
    });
  } finally {
    await ring.close();
  }
}
