import { keySetIssuer } from '../../src/domain/issuer';

// One rule for the discovery documents and every signing path: which issuer a key set's tokens carry.

test.each([
  [
    'the policy names one',
    'payments',
    'https://login.example.com',
    { issuer: 'https://sso.example.com', publicUrl: 'https://keys.example.com' },
    'https://login.example.com',
  ],
  [
    "the deployment's, for a policy that names none",
    'payments',
    undefined,
    { issuer: 'https://sso.example.com', publicUrl: 'https://keys.example.com' },
    'https://sso.example.com',
  ],
  [
    'an empty setting names nothing',
    'payments',
    '',
    { issuer: '', publicUrl: 'https://keys.example.com' },
    'https://keys.example.com/keysets/payments',
  ],
  [
    'the key set URL under the public URL',
    'payments',
    undefined,
    { publicUrl: 'https://keys.example.com/auth/' },
    'https://keys.example.com/auth/keysets/payments',
  ],
  [
    'the public URL itself for the default key set',
    'default',
    undefined,
    { publicUrl: 'https://keys.example.com' },
    'https://keys.example.com',
  ],
  [
    '… or for the key set named the default',
    'payments',
    undefined,
    { publicUrl: 'https://keys.example.com', defaultKeySetId: 'payments' },
    'https://keys.example.com',
  ],
  [
    "a key set named default that is not the deployment's default",
    'default',
    undefined,
    { publicUrl: 'https://keys.example.com', defaultKeySetId: 'main' },
    'https://keys.example.com/keysets/default',
  ],
  ['unknown without any of them', 'payments', undefined, {}, undefined],
])('%s', (_, keySetId, policyIssuer, deployment, expected) => {
  expect(keySetIssuer(keySetId, policyIssuer, deployment)).toBe(expected);
});
