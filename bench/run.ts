import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Kek, KekRing } from '../src/crypto/kek';
import { KeyStore } from '../src/store/key-store';
import { KeySetDriver, testPolicy } from '../test/helpers/key-sets';
import { createTestDatabase } from '../test/helpers/postgres';
import { benchCli } from './cli';
import { benchCustody } from './custody';
import { benchJwks } from './jwks';
import { startBenchPostgres } from './postgres';
import { benchStoreRotation, benchTemporalRotation } from './rotation';
import { benchSign } from './sign';
import { benchSigner } from './signer';
import { count } from './stats';
import { renderTable, type Row } from './table';

/** Key sets in PostgreSQL while the JWKS server is loaded: its cost per request must not grow with them. */
const JWKS_KEY_SETS = 10_000;
/** Key sets registered at once. */
const REGISTRATIONS_IN_FLIGHT = 8;

/** `howMany` key sets named `<prefix>-<n>`, each with an active key, registered REGISTRATIONS_IN_FLIGHT at a time. */
async function registerKeySets(store: KeyStore, prefix: string, howMany: number): Promise<void> {
  let next = 0;
  const registrar = async () => {
    while (next < howMany) {
      const keySet = await KeySetDriver.register(store, `${prefix}-${next++}`, testPolicy('ES256'));
      await keySet.rotate();
    }
  };
  await Promise.all(Array.from({ length: REGISTRATIONS_IN_FLIGHT }, registrar));
}

/** `npm run bench`: every figure of issue #5 §5, measured in this one run, as one markdown table. */
async function main(): Promise<void> {
  const began = performance.now();
  const step = (what: string) => console.error(`[bench ${((performance.now() - began) / 1000).toFixed(1)} s] ${what}`);
  step('starting PostgreSQL');
  const postgres = await startBenchPostgres();
  const rows: Row[] = [];
  try {
    const db = await createTestDatabase();
    try {
      const kekRing = new KekRing([new Kek(randomBytes(32))]);
      const store = new KeyStore(db.pool, kekRing);

      // A key set with a next, an active and a grace key: the JWKS a verifier sees mid-rotation.
      const jwksKeySet = await KeySetDriver.register(store, 'bench-jwks', testPolicy('ES256'));
      await jwksKeySet.rotate();
      await jwksKeySet.rotate();
      await jwksKeySet.addNext();

      step(`${count(JWKS_KEY_SETS)} more key sets, each with an active key, for the JWKS server to hold`);
      await registerKeySets(store, 'bench-jwks-many', JWKS_KEY_SETS);
      step('JWKS server under autocannon');
      rows.push(...(await benchJwks(db.url, jwksKeySet.keySetId, JWKS_KEY_SETS + 1)));
      step('KeyRing.sign');
      rows.push(...(await benchSign(db.pool, store, kekRing)));
      step('KeyRing.sign through each custody backend (moto on loopback, a SoftHSM2 token)');
      rows.push(...(await benchCustody(db.pool, kekRing)));
      step('rotation without Temporal');
      rows.push(...(await benchStoreRotation(db.pool, store, kekRing)));
    } finally {
      await db.drop();
    }
    step('keyturn signer under autocannon, against bare node:http + crypto.sign');
    rows.push(...(await benchSigner()));
    step('rotation through Temporal (dev server + worker)');
    rows.push(...(await benchTemporalRotation()));
    step('CLI start-up: --help, and status against the Temporal CLI (dev server + worker)');
    rows.push(...(await benchCli()));
  } finally {
    await postgres.stop();
  }
  step('done');
  console.log(renderTable(rows));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
