import { performance } from 'node:perf_hooks';
import type { Pool } from 'pg';
import type { KekRing } from '../src/crypto/kek';
import { AwsKmsCustody } from '../src/custody/aws-kms';
import { CustodyRegistry } from '../src/custody/custody-registry';
import type { SigningAlgorithm } from '../src/domain/algorithms';
import type { CustodyBackend, CustodySettings } from '../src/domain/custody-settings';
import { validatePolicy } from '../src/domain/policy';
import { KeyRing } from '../src/issuer/key-ring';
import { createLogger } from '../src/logger';
import { KeyStore } from '../src/store/key-store';
import { KeySetDriver, testPolicy } from '../test/helpers/key-sets';
import { MOTO_VERSION, startMotoServer, type MotoServer } from '../test/helpers/moto';
import { createSoftHsmDirectory, createSoftHsmToken, removeSoftHsmDirectory } from '../test/helpers/softhsm';
import { count, ms, ratio } from './stats';
import type { Row } from './table';

const BACKENDS: CustodyBackend[] = ['sealed', 'aws-kms', 'pkcs11'];
const ALGORITHMS: SigningAlgorithm[] = ['ES256', 'RS256', 'PS256'];
/** Signings in flight at once in the concurrent measurement: what a busy signing service keeps waiting on KMS. */
const IN_FLIGHT = 16;
const WARM_UP_MS = 200;
const SLICE_MS = 500;
/** Each case runs ROUNDS slices, in an order that turns each round; a case's figures pool its slices. */
const ROUNDS = 3;
const TTL_SECONDS = 300;
const ISSUER = 'https://issuer.example';
const CLAIMS = { sub: 'user-1234', aud: 'api', scope: 'read write' };

/** What the rows say each backend signs through. */
const BACKEND_LABEL: Record<CustodyBackend, string> = {
  sealed: 'sealed',
  'aws-kms': `aws-kms against moto ${MOTO_VERSION} on loopback (a Python emulator: its figures are moto's, not AWS KMS's)`,
  pkcs11: 'pkcs11 against SoftHSM2',
};

interface Measured {
  tokens: number;
  elapsedMs: number;
  /** This process's CPU time over the slices, in µs: what a signing costs keyturn beside the backend's own work. */
  cpuMicros: number;
  /** Each signing's latency, in ms. */
  latencies: number[];
}

const nothingMeasured = (): Measured => ({ tokens: 0, elapsedMs: 0, cpuMicros: 0, latencies: [] });

/** Keeps `inFlight` calls of `sign` going for `sliceMs`, each started as the last of its lane settles. */
async function drive(sign: () => Promise<string>, inFlight: number, sliceMs: number, into: Measured): Promise<void> {
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  const end = start + sliceMs;
  const lane = async () => {
    for (let began = performance.now(); began < end;) {
      await sign();
      const now = performance.now();
      into.latencies.push(now - began);
      into.tokens += 1;
      began = now;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  into.elapsedMs += performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  into.cpuMicros += cpu.user + cpu.system;
}

/** The q-quantile (0..1) of ascending `sorted`, by the nearest rank. */
function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** A duration in ms, in µs below a millisecond, where sealed signatures sit. */
function duration(milliseconds: number): string {
  return milliseconds < 1 ? `${Math.round(milliseconds * 1000)} µs` : ms(milliseconds);
}

/** A ratio to two significant digits at either end (moto is two orders of magnitude from sealed ES256), else as the table's others. */
function relative(value: number): string {
  return value < 0.1 ? value.toPrecision(2) : value >= 10 ? value.toFixed(0) : ratio(value);
}

interface Figures {
  tokensPerSecond: number;
  p50: number;
  p99: number;
  cpuPerToken: number;
}

function figuresOf(measured: Measured): Figures {
  const sorted = measured.latencies.sort((a, b) => a - b);
  return {
    tokensPerSecond: measured.tokens / (measured.elapsedMs / 1000),
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    cpuPerToken: measured.cpuMicros / 1000 / measured.tokens,
  };
}

/**
 * `KeyRing.sign` with keys in each custody backend, sealed in PostgreSQL, in KMS (moto on loopback) and
 * on a throwaway SoftHSM2 token, for each algorithm: tokens per wall-clock second and latency, one
 * signing at a time and IN_FLIGHT at once. Wall clock, not CPU time: KMS signs in another process and the
 * token in libuv's threads; this process's CPU per token is given beside it (for pkcs11 it includes
 * SoftHSM2's signing, a library in this process). The rows put each backend beside the sealed ring (issue 16).
 */
export async function benchCustody(pool: Pool, kekRing: KekRing): Promise<Row[]> {
  // SoftHSM2 reads SOFTHSM2_CONF at C_Initialize from the real environment: this process's, set before any token use.
  const ownSoftHsmDirectory = process.env.SOFTHSM2_CONF === undefined;
  if (ownSoftHsmDirectory) await createSoftHsmDirectory();
  let kms: MotoServer | undefined;
  try {
    const server = (kms = await startMotoServer());
    const token = await createSoftHsmToken('keyturn-bench');
    const registry = new CustodyRegistry({
      kekRing,
      factories: {
        'aws-kms': (settings) =>
          new AwsKmsCustody({ ...server.clientOptions, region: settings.region ?? server.clientOptions.region }),
      },
    });
    try {
      const settings: Record<CustodyBackend, CustodySettings> = {
        sealed: { backend: 'sealed' },
        'aws-kms': { backend: 'aws-kms' },
        pkcs11: token.settings,
      };
      const store = new KeyStore(pool, kekRing, { custody: registry });
      const cases = BACKENDS.flatMap((backend) => ALGORITHMS.map((alg) => ({ backend, alg })));
      const keySetId = (c: { backend: CustodyBackend; alg: SigningAlgorithm }) =>
        `bench-custody-${c.backend}-${c.alg.toLowerCase()}`;
      // One after another: none of this is timed.
      for (const c of cases) {
        const policy = validatePolicy({ issuer: ISSUER, custody: settings[c.backend] }, { base: testPolicy(c.alg) });
        await (await KeySetDriver.register(store, keySetId(c), policy)).rotate();
      }
      const ring = await KeyRing.open({
        pool,
        kekRing,
        custody: registry,
        keySetIds: cases.map(keySetId),
        logger: createLogger({ level: 'silent' }),
      });
      try {
        const modes = [1, IN_FLIGHT];
        const measured = new Map<string, Measured>();
        const name = (c: (typeof cases)[number], inFlight: number) => `${c.backend}/${c.alg}/${inFlight}`;
        const runs = cases.flatMap((c) => modes.map((inFlight) => ({ c, inFlight })));
        for (const { c, inFlight } of runs) {
          const sign = () => ring.sign(keySetId(c), CLAIMS, { ttl: TTL_SECONDS });
          await drive(sign, inFlight, WARM_UP_MS, nothingMeasured());
          measured.set(name(c, inFlight), nothingMeasured());
        }
        for (let round = 0; round < ROUNDS; round += 1) {
          const order = round % 2 === 0 ? runs : [...runs].reverse();
          for (const { c, inFlight } of order) {
            const sign = () => ring.sign(keySetId(c), CLAIMS, { ttl: TTL_SECONDS });
            await drive(sign, inFlight, SLICE_MS, measured.get(name(c, inFlight))!);
          }
        }
        const figures = (c: (typeof cases)[number], inFlight: number) => figuresOf(measured.get(name(c, inFlight))!);
        return cases.flatMap((c) =>
          custodyRows(c.backend, c.alg, figures(c, 1), figures(c, IN_FLIGHT), {
            one: figures({ ...c, backend: 'sealed' }, 1),
            many: figures({ ...c, backend: 'sealed' }, IN_FLIGHT),
          }),
        );
      } finally {
        await ring.close();
      }
    } finally {
      // The registry first: its PKCS#11 custody's close finalises the module before the token goes.
      await registry.close();
      await token.close();
    }
  } finally {
    await kms?.stop();
    if (ownSoftHsmDirectory) {
      await removeSoftHsmDirectory();
      delete process.env.SOFTHSM2_CONF;
    }
  }
}

/** A throughput row and a latency row for one backend and algorithm, each beside the sealed ring's figure. */
function custodyRows(
  backend: CustodyBackend,
  alg: SigningAlgorithm,
  one: Figures,
  many: Figures,
  sealed: { one: Figures; many: Figures },
): Row[] {
  const isSealed = backend === 'sealed';
  const label = `KeyRing.sign ${alg}, ${BACKEND_LABEL[backend]}, 1 / ${IN_FLIGHT} in flight, ${ROUNDS}×${SLICE_MS} ms, unpinned`;
  const perCpu = (f: Figures) => duration(f.cpuPerToken);
  const latencies = (f: Figures) => `p50 ${duration(f.p50)}, p99 ${duration(f.p99)}`;
  return [
    {
      measure: `${label}: tokens/s (this process's CPU per token)`,
      result: `${count(one.tokensPerSecond)} (${perCpu(one)}) / ${count(many.tokensPerSecond)} (${perCpu(many)})`,
      reference: isSealed
        ? 'the reference of the custody rows'
        : `${count(sealed.one.tokensPerSecond)} / ${count(sealed.many.tokensPerSecond)} (sealed)`,
      figure: isSealed
        ? '–'
        : `${relative(one.tokensPerSecond / sealed.one.tokensPerSecond)}× / ` +
          `${relative(many.tokensPerSecond / sealed.many.tokensPerSecond)}× sealed`,
      target: 'none (reported)',
      pass: undefined,
    },
    {
      measure: `KeyRing.sign ${alg}, ${backend}: latency, 1 / ${IN_FLIGHT} in flight`,
      result: `${latencies(one)} / ${latencies(many)}`,
      reference: isSealed ? '–' : `${latencies(sealed.one)} / ${latencies(sealed.many)} (sealed)`,
      figure: isSealed
        ? '–'
        : `p99 ${relative(one.p99 / sealed.one.p99)}× / ${relative(many.p99 / sealed.many.p99)}× sealed`,
      target: 'none (reported)',
      pass: undefined,
    },
  ];
}
