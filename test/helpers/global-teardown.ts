import { removeSoftHsmDirectory } from './softhsm';

export default async function globalTeardown(): Promise<void> {
  await globalThis.keyturnTestPostgres?.stop();
  await removeSoftHsmDirectory();
}
