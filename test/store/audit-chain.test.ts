import { createHash } from 'node:crypto';
import {
  canonicalJson,
  findChainBreak,
  hashAuditEvent,
  nextLink,
  type ChainedFields,
  type StoredLink,
} from '../../src/store/audit-chain';

// The chain's encoding is a contract with anyone who rechecks an exported trail: these tests pin it.

const FIELDS: Omit<ChainedFields, 'seq' | 'prevHash'> = {
  keySetId: 'default',
  kid: 'kid-1',
  event: 'promoted',
  fromState: 'next',
  toState: 'active',
  trigger: 'manual',
  actor: 'alice (keyturn CLI)',
  reason: 'drill',
  operationId: 'op-1',
  occurredAt: Date.UTC(2025, 0, 1),
  details: { b: [1, 'é'], a: { y: null, x: true } },
};

describe('canonicalJson (RFC 8785)', () => {
  test('sorts members by UTF-16 code units at every depth, keeps array order, writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }, 'x'], '10': 0, '9': 0, é: 0, Z: 0 })).toBe(
      '{"10":0,"9":0,"Z":0,"a":[{"c":3,"d":2},"x"],"b":1,"é":0}',
    );
  });

  test('numbers and strings as JSON.stringify writes them', () => {
    expect(canonicalJson([1e21, 1e-7, 0.1 + 0.2, -0, 'a"\n\u2028'])).toBe(
      '[1e+21,1e-7,0.30000000000000004,0,"a\\"\\n\u2028"]',
    );
  });

  test.each([[undefined], [Number.NaN], [new Date(0)], [{ a: undefined }], [new Map()]])(
    'refuses %p, which is not JSON',
    (value) => {
      expect(() => canonicalJson(value)).toThrow(TypeError);
    },
  );
});

test('an event hashes to SHA-256 of the documented encoding', () => {
  const encoding =
    '{"actor":"alice (keyturn CLI)","details":{"a":{"x":true,"y":null},"b":[1,"é"]},"event":"promoted","fromState":"next",' +
    '"keySetId":"default","kid":"kid-1","occurredAt":1735689600000,"operationId":"op-1","prevHash":null,"reason":"drill",' +
    '"seq":1,"toState":"active","trigger":"manual"}';
  expect(hashAuditEvent({ ...FIELDS, seq: 1, prevHash: null })).toBe(
    createHash('sha256').update(encoding, 'utf8').digest('hex'),
  );
});

test('nextLink follows the head; every field and the predecessor change the hash', () => {
  const first = nextLink({ seq: 0, hash: null }, FIELDS);
  expect(first).toEqual({ seq: 1, prevHash: null, hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
  const second = nextLink({ seq: 1, hash: first.hash }, FIELDS);
  expect(second).toMatchObject({ seq: 2, prevHash: first.hash });

  const base = hashAuditEvent({ ...FIELDS, seq: 2, prevHash: first.hash });
  const variants: Partial<ChainedFields>[] = [
    { keySetId: 'other' },
    { seq: 3 },
    { kid: null },
    { event: 'demoted' },
    { fromState: null },
    { toState: 'grace' },
    { trigger: 'scheduled' },
    { actor: 'bob' },
    { reason: 'drill ' },
    { operationId: null },
    { occurredAt: FIELDS.occurredAt + 1 },
    { details: {} },
    { prevHash: null },
  ];
  for (const variant of variants)
    expect(hashAuditEvent({ ...FIELDS, seq: 2, prevHash: first.hash, ...variant })).not.toBe(base);
});

describe('findChainBreak', () => {
  /** A valid chain of `n` events with row ids 101, 102, … */
  function chain(n: number): StoredLink[] {
    const links: StoredLink[] = [];
    let head = { seq: 0, hash: null as string | null };
    for (let i = 0; i < n; i += 1) {
      const fields = { ...FIELDS, reason: `event ${i + 1}` };
      const link = nextLink(head, fields);
      links.push({ ...fields, id: 101 + i, ...link });
      head = { seq: link.seq, hash: link.hash };
    }
    return links;
  }
  const headOf = (links: StoredLink[]) => ({ seq: links.at(-1)?.seq ?? 0, hash: links.at(-1)?.hash ?? null });

  test('an intact chain, and an empty one with an empty head, are fine', () => {
    const links = chain(4);
    expect(findChainBreak(links, headOf(links))).toBeNull();
    expect(findChainBreak([], { seq: 0, hash: null })).toBeNull();
  });

  test('an event rewritten with a recomputed hash is caught by its successor', () => {
    const links = chain(4);
    const forged = { ...links[1], reason: 'nothing to see' };
    forged.hash = hashAuditEvent({ ...forged, seq: 2 });
    expect(findChainBreak([links[0], forged, ...links.slice(2)], headOf(links))).toMatchObject({
      kind: 'edited',
      seq: 2,
      id: 102,
    });
  });

  test('a first event that names a predecessor means earlier ones were removed and the rest renumbered', () => {
    const [, second] = chain(2);
    const renumbered = { ...second, seq: 1 };
    renumbered.hash = hashAuditEvent({ ...renumbered, seq: 1 });
    expect(findChainBreak([renumbered], { seq: 1, hash: renumbered.hash })).toMatchObject({
      kind: 'edited',
      seq: 1,
      id: 102,
    });
  });

  test('a row without seq or hash (the constraint dropped) is named by its id', () => {
    const links = chain(2);
    expect(findChainBreak([...links, { ...links[1], id: 999, seq: null, hash: null }], headOf(links))).toMatchObject({
      kind: 'unchained',
      id: 999,
    });
  });

  test('a repeated seq, and events beyond the head', () => {
    const links = chain(3);
    expect(findChainBreak([...links.slice(0, 2), { ...links[2], seq: 2 }], headOf(links))).toMatchObject({
      kind: 'edited',
      id: 103,
    });
    expect(findChainBreak(links, headOf(links.slice(0, 2)))?.message).toMatch(
      /ends at seq 3 but the key set's head records seq 2 .*added without moving the head/,
    );
  });

  test('a head with the right seq but another hash', () => {
    const links = chain(2);
    expect(findChainBreak(links, { seq: 2, hash: 'f'.repeat(64) })?.message).toMatch(
      /newest event was rewritten with a new hash, or the head was edited/,
    );
  });
});
