import type { KekRing } from '../../src/crypto/kek';
import { AwsKmsCustody } from '../../src/custody/aws-kms';
import { CustodyRegistry, type CustodyRegistryOptions } from '../../src/custody/custody-registry';
import type { CustodyBackend, CustodySettings } from '../../src/domain/custody-settings';
import { startMotoServer, type MotoServer } from './moto';
import { createSoftHsmToken, type SoftHsmToken } from './softhsm';

/** Every custody backend, for `describe.each`: each suite that must hold with every backend runs once per backend. */
export const CUSTODY_BACKENDS_UNDER_TEST: CustodyBackend[] = ['sealed', 'aws-kms', 'pkcs11'];

/** A backend as a test uses it: the policy's custody settings, and registries that reach the test's backend. */
export interface CustodyUnderTest {
  backend: CustodyBackend;
  /** The policy's `custody`; undefined for sealed, the default. */
  settings: CustodySettings | undefined;
  /** How a registry reaches this file's KMS server (a token needs nothing but the settings). */
  factories: CustodyRegistryOptions['factories'];
  /** A registry reaching this file's KMS server or token; closed after the file's tests. */
  registry(kekRing: KekRing): CustodyRegistry;
}

/**
 * Starts what the backends need for one test file, a KMS-compatible server (moto) and a SoftHSM2 token,
 * before its tests, and stops them after (registries first: the token's module is finalised by the last).
 * Call at the top of the file; the answer gives each backend once the file's tests run.
 */
export function useCustodyBackends(): (backend: CustodyBackend) => CustodyUnderTest {
  let kms: MotoServer | undefined;
  let token: SoftHsmToken | undefined;
  const registries: CustodyRegistry[] = [];
  beforeAll(async () => {
    [kms, token] = await Promise.all([startMotoServer(), createSoftHsmToken()]);
  }, 600_000);
  afterAll(async () => {
    await Promise.all(registries.map((registry) => registry.close()));
    await Promise.all([kms?.stop(), token?.close()]);
  });
  return (backend) => {
    const settings: CustodySettings | undefined =
      backend === 'aws-kms' ? { backend } : backend === 'pkcs11' ? token!.settings : undefined;
    const factories: CustodyRegistryOptions['factories'] = {
      'aws-kms': (s) => new AwsKmsCustody({ ...kms!.clientOptions, region: s.region ?? kms!.clientOptions.region }),
    };
    return {
      backend,
      settings,
      factories,
      registry(kekRing) {
        const registry = new CustodyRegistry({ kekRing, factories });
        registries.push(registry);
        return registry;
      },
    };
  };
}
