import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  KeySetsFileError,
  loadKeySetsFile,
  parseKeySetsFile,
  type KeySetsFileProblem,
} from '../../src/client/key-sets-file';

// Bad input in keysets.yaml: each row a file and the problems it must be refused with, on one line,
// naming the field (and line). `keyturn apply` reads the whole file before it contacts anything, so a
// refused file changes nothing (test/cli/bad-input.test.ts checks that it sends nothing).

/** The problems `text` is refused with; fails the test if it is accepted or refused some other way. */
function refusal(text: string): { problems: KeySetsFileProblem[]; message: string } {
  try {
    parseKeySetsFile(text, 'keysets.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(KeySetsFileError);
    const { problems, message } = error as KeySetsFileError;
    expect(message).not.toContain('\n');
    expect(message).not.toContain('\u001b');
    return { problems, message };
  }
  throw new Error('the file was accepted');
}

const keySet = (id: string, ...fields: string[]) =>
  ['keySets:', `  - id: ${id}`, ...fields.map((f) => `    ${f}`)].join('\n');

/** The "billion laughs": nine aliases of nine aliases of ... of one string, 9^9 strings once expanded. */
function aliasBomb(levels: number, shape: 'list' | 'map'): string {
  const anchor = (i: number) => `l${i}`;
  const lines = [`${anchor(0)}: &${anchor(0)} "lol"`];
  for (let i = 1; i < levels; i++) {
    const refs = Array.from({ length: 9 }, (_, j) =>
      shape === 'list' ? `*${anchor(i - 1)}` : `k${j}: *${anchor(i - 1)}`,
    );
    lines.push(`${anchor(i)}: &${anchor(i)} ${shape === 'list' ? `[${refs.join(', ')}]` : `{${refs.join(', ')}}`}`);
  }
  return `${lines.join('\n')}\n${keySet('web', `algorithm: *${anchor(levels - 1)}`)}\n`;
}

const problem = (field: string, message: string | RegExp, more: Partial<KeySetsFileProblem> = {}) =>
  expect.objectContaining({
    field,
    message: typeof message === 'string' ? expect.stringContaining(message) : expect.stringMatching(message),
    ...more,
  });

describe('keysets.yaml refuses', () => {
  test.each<[string, string, ReturnType<typeof problem>[]]>([
    // YAML itself
    ['a billion laughs (lists)', aliasBomb(10, 'list'), [problem('YAML', 'aliases expand too far')]],
    ['a billion laughs (mappings)', aliasBomb(10, 'map'), [problem('YAML', 'aliases expand too far')]],
    ['two documents', `${keySet('a')}\n---\n${keySet('b')}`, [problem('YAML', 'multiple documents')]],
    [
      'a key repeated in a key set',
      keySet('web', 'rotationPeriod: 7d', 'rotationPeriod: 8d'),
      [problem('YAML', 'unique', { line: 4 })],
    ],
    ['a syntax error', keySet('web', 'rotationPeriod: "7d'), [problem('YAML', /.+/)]],
    [
      'nesting 100,000 deep',
      `keySets: ${'['.repeat(100_000)}${']'.repeat(100_000)}`,
      [problem('YAML', 'nested too deeply to read', { line: 1 })],
    ],
    // the shape of the file
    ['an empty file', '', [problem('keySets', 'the file is empty')]],
    ['only a comment', '# nothing yet\n', [problem('keySets', 'the file is empty')]],
    ['only a document marker', '---\n', [problem('keySets', 'the file is empty')]],
    ['a list', '- id: web\n', [problem('keySets', 'must be a mapping')]],
    ['a string', 'keySets\n', [problem('keySets', 'must be a mapping')]],
    ['a number', '42\n', [problem('keySets', 'must be a mapping')]],
    ['binary garbage', '\u0000\u0001\u0002\u00ff\u00fe', [problem('keySets', 'must be a mapping')]],
    ['keySets as a mapping', 'keySets:\n  web: {}\n', [problem('keySets', 'must be a list', { line: 1 })]],
    ['a key set that is a string', 'keySets:\n  - web\n', [problem('keySets[0]', 'must be a mapping', { line: 2 })]],
    // unknown fields
    [
      'an unknown top-level field',
      `${keySet('web')}\nkeysets: []\n`,
      [problem('keysets', 'unknown top-level key', { line: 3 })],
    ],
    [
      '__proto__ at the top',
      `__proto__:\n  polluted: true\n${keySet('web')}`,
      [problem('__proto__', 'unknown top-level key', { line: 1 })],
    ],
    [
      'an unknown policy field',
      keySet('web', 'rotationPeriodd: 7d'),
      [problem('rotationPeriodd', 'unknown field', { line: 3, keySetId: 'web' })],
    ],
    [
      'a custody that cannot hold the algorithm',
      keySet('web', 'algorithm: EdDSA', 'custody: aws-kms'),
      [problem('custody', 'aws-kms cannot hold EdDSA keys', { keySetId: 'web' })],
    ],
    [
      'a pkcs11 custody without its token, or with the PIN itself',
      keySet('web', 'custody:', '  backend: pkcs11', '  module: /usr/lib/softhsm/libsofthsm2.so', '  pin: "1234"'),
      [
        problem('custody.pin', 'unknown setting of pkcs11', { keySetId: 'web' }),
        problem('custody.tokenLabel', 'is required for pkcs11', { keySetId: 'web' }),
        problem('custody.pinFile', 'exactly one of pinFile', { keySetId: 'web' }),
      ],
    ],
    [
      'an unknown supervisor field',
      `supervisor:\n  intervall: 5m\n${keySet('web')}`,
      [problem('supervisor.intervall', 'unknown field', { line: 2 })],
    ],
    // ids
    [
      'two key sets with one id',
      `${keySet('web')}\n  - id: web\n`,
      [problem('id', 'appears more than once (first at line 2)', { line: 3, keySetId: 'web' })],
    ],
    ['the id "."', keySet('"."'), [problem('keySets[0].id', '"." is not a valid key set id', { line: 2 })]],
    ['the id ".."', keySet('".."'), [problem('keySets[0].id', '".." is not a valid key set id', { line: 2 })]],
    ['an empty id', keySet('""'), [problem('keySets[0].id', '"" is not a valid key set id')]],
    [
      'an id of 65 characters',
      keySet('a'.repeat(65)),
      [problem('keySets[0].id', `"${'a'.repeat(64)}"… (65 characters) is not a valid key set id`)],
    ],
    [
      'an id of 100,000 characters',
      keySet('a'.repeat(100_000)),
      [problem('keySets[0].id', '… (100000 characters) is not a valid key set id')],
    ],
    ['a non-ASCII id', keySet('ünï'), [problem('keySets[0].id', '"ünï" is not a valid key set id')]],
    ['an id with a slash', keySet('a/b'), [problem('keySets[0].id', '"a/b" is not a valid key set id')]],
    ['an id with a space', keySet('"web "'), [problem('keySets[0].id', '"web " is not a valid key set id')]],
    ['an id with a newline', keySet('"a\\nb"'), [problem('keySets[0].id', '"a\\nb" is not a valid key set id')]],
    [
      'an id with a terminal escape',
      keySet('"\\e[31mred"'),
      [problem('keySets[0].id', '"\\u001b[31mred" is not a valid key set id')],
    ],
    ['a number as id', keySet('1e3'), [problem('keySets[0].id', '1000 must be text (quote it)')]],
    ['binary data as id', keySet('!!binary aGVsbG8='), [problem('keySets[0].id', 'must be text')]],
    ['no id', 'keySets:\n  - rotationPeriod: 7d\n', [problem('keySets[0].id', 'missing')]],
    [
      'a bad id, and a field of the same key set',
      keySet('"a/b"', 'colour: red'),
      [problem('keySets[0].id', 'not a valid key set id'), problem('keySets[0].colour', 'unknown field')],
    ],
    // durations
    [
      'a duration that overflows a date',
      keySet('web', 'rotationPeriod: 999999999999d'),
      [
        problem(
          'rotationPeriod',
          '"999999999999d" is not a duration; write a whole number and a unit, at most 36500d',
          { line: 3, keySetId: 'web' },
        ),
      ],
    ],
    [
      'a duration just past 100 years',
      keySet('web', 'retirement: 36501d'),
      [problem('retirement', 'at most 36500d', { keySetId: 'web' })],
    ],
    [
      'a duration in hours past 100 years',
      keySet('web', 'retirement: 876001h'),
      [problem('retirement', 'at most 36500d', { keySetId: 'web' })],
    ],
    ['a duration as a number', keySet('web', 'gracePeriod: 5'), [problem('gracePeriod', '5 is not a duration')]],
    [
      'a supervisor interval that overflows a date',
      `supervisor:\n  interval: 99999999d\n${keySet('web')}`,
      [problem('supervisor.interval', 'at most 36500d', { line: 2 })],
    ],
    // size
    ['a file over 1 MiB', `${keySet('web')}\n${'#'.repeat(1024 * 1024)}\n`, [problem('file', 'is larger than 1 MiB')]],
  ])('%s', (_name, text, expected) => {
    const { problems } = refusal(text);
    expect(problems).toEqual(expected);
  });

  test('an alias bomb quickly', () => {
    const started = performance.now();
    refusal(aliasBomb(10, 'list'));
    // Expanded, it would be 9^9 strings: a refusal within seconds means it never was.
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  test('a few aliases are still fine', () => {
    const file = parseKeySetsFile(
      [
        'keySets:',
        '  - id: a',
        '    publishedAt: &urls ["https://a.example/jwks.json"]',
        '  - id: b',
        '    publishedAt: *urls',
      ].join('\n'),
    );
    expect(file.keySets.map((k) => k.policy.publishedAt)).toEqual([
      ['https://a.example/jwks.json'],
      ['https://a.example/jwks.json'],
    ]);
  });
});

describe('keysets.yaml on disk', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-keysets-bad-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test('a huge file is refused, read no further than the limit', async () => {
    const file = path.join(dir, 'huge.yaml');
    await writeFile(file, `${keySet('web')}\n${`# ${'x'.repeat(78)}\n`.repeat(100_000)}`);
    await expect(loadKeySetsFile(file)).rejects.toMatchObject({
      code: 'ERR_KEYSETS_FILE_INVALID',
      problems: [problem('file', 'is larger than 1 MiB')],
    });
  });

  test('an endless file (/dev/zero) is refused', async () => {
    await expect(loadKeySetsFile('/dev/zero')).rejects.toMatchObject({
      problems: [problem('file', 'is larger than 1 MiB')],
    });
  });

  test('a folder is named as one', async () => {
    await expect(loadKeySetsFile(dir)).rejects.toMatchObject({
      field: 'file',
      message: expect.stringContaining('it is a folder; name one with -f <file>'),
    });
  });
});
