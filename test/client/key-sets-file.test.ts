import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { KeySetsFileError, loadKeySetsFile, parseKeySetsFile } from '../../src/client/key-sets-file';
import { DEFAULT_POLICY } from '../../src/domain/policy';

// The key sets file is checked whole before anything is applied: every problem, with its line, key
// set and field, in one error.

function problemsOf(text: string): KeySetsFileError {
  try {
    parseKeySetsFile(text, 'test.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(KeySetsFileError);
    return error as KeySetsFileError;
  }
  throw new Error('the file was accepted');
}

describe('parseKeySetsFile', () => {
  it('lists every problem of a file at once, with line, key set id and field', () => {
    const error = problemsOf(
      [
        'supervisor:', //                1
        '  interval: 30s', //            2
        'keySet: []', //                 3
        'keySets:', //                   4
        '  - id: web', //                5
        '    algorithm: HS256', //       6
        '    gracePeriod: 10m', //       7
        '  - id: api', //                8
        '    prepublish: 10m', //        9
        '    publishedAt: ["https://ok.example/jwks.json", "ftp://no"]', // 10
        '  - id: web', //                11
        '  - id: "has space"', //        12
        '    colour: red', //            13
        '  - rotationPeriod: 7d', //     14
      ].join('\n'),
    );
    expect(error.code).toBe('ERR_KEYSETS_FILE_INVALID');
    expect(error.problems).toEqual([
      { line: 2, field: 'supervisor.interval', message: expect.stringContaining('shorter than the minimum, 1m') },
      { line: 3, field: 'keySet', message: expect.stringContaining('unknown top-level key') },
      { line: 6, keySetId: 'web', field: 'algorithm', message: expect.stringContaining('"HS256" is not supported') },
      {
        line: 7,
        keySetId: 'web',
        field: 'gracePeriod',
        message: expect.stringContaining('gracePeriod >= maxTokenTtl'),
      },
      { line: 9, keySetId: 'api', field: 'prepublish', message: expect.stringContaining('prepublish >= jwksMaxAge') },
      { line: 10, keySetId: 'api', field: 'publishedAt[1]', message: '"ftp://no" is not an http(s) URL' },
      { line: 11, keySetId: 'web', field: 'id', message: 'appears more than once (first at line 5)' },
      { line: 12, field: 'keySets[3].id', message: expect.stringContaining('"has space" is not a valid key set id') },
      { line: 13, field: 'keySets[3].colour', message: expect.stringContaining('unknown field') },
      { line: 14, field: 'keySets[4].id', message: expect.stringContaining('missing') },
    ]);
    // One line for the CLI, naming each problem.
    expect(error.message).not.toContain('\n');
    expect(error.message).toMatch(/^test\.yaml has 10 problems, nothing was applied: line 2: supervisor\.interval: /);
    expect(error.message).toContain('line 7: key set "web" gracePeriod: ');
    expect(error.message).toContain('line 10: key set "api" publishedAt[1]: ');
  });

  it('reports a YAML syntax error with its line', () => {
    const error = problemsOf(['keySets:', '  - id: web', '    rotationPeriod: "30d', '  - id: api'].join('\n'));
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]).toMatchObject({ field: 'YAML', line: expect.any(Number) });
    expect(error.problems[0].line).toBeGreaterThanOrEqual(3);
    expect(error.message).toMatch(/^test\.yaml has 1 problem, nothing was applied: line \d+: YAML: /);
  });

  it('reports a key repeated within a key set as a YAML error on its line', () => {
    const error = problemsOf(
      ['keySets:', '  - id: web', '    rotationPeriod: 7d', '    rotationPeriod: 8d'].join('\n'),
    );
    expect(error.problems).toEqual([{ line: 4, field: 'YAML', message: expect.stringContaining('unique') }]);
  });

  it.each([
    ['an empty file', '', 'the file is empty'],
    ['no keySets', 'supervisor:\n  interval: 5m\n', 'missing'],
    ['an empty list', 'keySets: []\n', 'lists no key set'],
    ['a scalar', 'hello\n', 'must be a mapping'],
  ])('refuses %s', (_name, text, message) => {
    expect(problemsOf(text).problems).toEqual([
      expect.objectContaining({ field: 'keySets', message: expect.stringContaining(message) }),
    ]);
  });

  it('fills left-out policy fields from the seed policy, normalises durations, and defaults the supervisor to 5m', () => {
    const file = parseKeySetsFile(
      [
        'keySets:',
        '  - id: default',
        '  - id: api.v2',
        '    algorithm: EdDSA',
        '    rotationPeriod: 168h',
        '    issuer: https://auth.example',
      ].join('\n'),
      'k.yaml',
    );
    expect(file).toEqual({
      source: 'k.yaml',
      supervisor: { interval: '5m', intervalMs: 300_000 },
      keySets: [
        { id: 'default', policy: { ...DEFAULT_POLICY } },
        {
          id: 'api.v2',
          policy: { ...DEFAULT_POLICY, algorithm: 'EdDSA', rotationPeriod: '7d', issuer: 'https://auth.example' },
        },
      ],
    });
  });

  it('takes the supervisor interval from the file', () => {
    expect(parseKeySetsFile('supervisor:\n  interval: 90m\nkeySets:\n  - id: a\n').supervisor).toEqual({
      interval: '90m',
      intervalMs: 5_400_000,
    });
  });
});

describe('loadKeySetsFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-keysets-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads the example keysets.yaml at the repository root: key set default under the seed policy', async () => {
    const file = await loadKeySetsFile(path.join(__dirname, '..', '..', 'keysets.yaml'));
    expect(file.supervisor.interval).toBe('5m');
    expect(file.keySets).toEqual([{ id: 'default', policy: { ...DEFAULT_POLICY } }]);
  });

  it('names a missing file and how to name another', async () => {
    const missing = path.join(dir, 'nope.yaml');
    await expect(loadKeySetsFile(missing)).rejects.toMatchObject({
      code: 'ERR_KEYSETS_FILE_INVALID',
      field: 'file',
      message: expect.stringMatching(/nope\.yaml.*no such file; name one with -f <file>/),
    });
  });

  it('reports problems under the name it was given', async () => {
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, 'keySets:\n  - id: x\n    maxTokenTtl: 1y\n');
    await expect(loadKeySetsFile(file)).rejects.toMatchObject({
      message: expect.stringMatching(
        new RegExp(
          `^${file.replace(/[.]/g, '\\.')} has 1 problem.*line 3: key set "x" maxTokenTtl: "1y" is not a duration`,
        ),
      ),
    });
  });
});
