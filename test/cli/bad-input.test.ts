import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseKekRing } from '../../src/crypto/kek';
import { KeyStore } from '../../src/store/key-store';
import { runKeyturn as keyturn } from '../helpers/cli';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';

// Bad input on the command line, in-process through runCli: each row a command and the one line it
// must fail with, exit code 1. Temporal (TEMPORAL_ADDRESS) and PostgreSQL (DATABASE_URL) point at a
// port that counts the connections made to it, and the data folder does not exist: a refused command
// must leave the count at zero and no folder behind, so it sent nothing and started nothing (no
// embedded PostgreSQL, no KEK file).

const KEK = randomBytes(32).toString('base64');
const KID = 'ElcXEmFgLFnzdAkC8crykzuVMUOIwQ4uFlcsSAblSQ';
const savedEnv = { ...process.env };
let scratch: string;
let dataDir: string;
let listener: Server;
let connections = 0;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'keyturn-cli-bad-'));
  dataDir = path.join(scratch, 'data');
  listener = createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address() as AddressInfo;
  for (const name of ['TEMPORAL_NAMESPACE', 'TEMPORAL_PROFILE', 'TEMPORAL_API_KEY', 'KEYTURN_DEBUG'])
    delete process.env[name];
  Object.assign(process.env, {
    TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
    DATABASE_URL: `postgres://keyturn@127.0.0.1:${port}/keyturn`,
    KEYTURN_KEK: KEK,
    KEYTURN_DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
  });
});

afterAll(async () => {
  process.env = { ...savedEnv };
  await new Promise((resolve) => listener.close(resolve));
  await rm(scratch, { recursive: true, force: true });
});

/** Runs `keyturn args`, expects exit code 1 with one line matching `message`, and nothing sent or created. */
async function refused(args: string[], message: RegExp | string): Promise<void> {
  const before = connections;
  const run = await keyturn(...args);
  expect({ args, ...run }).toEqual({
    args,
    code: 1,
    out: '',
    err: expect.stringMatching(
      typeof message === 'string' ? new RegExp(`^keyturn: .*${escape(message)}.*\\n$`) : message,
    ),
  });
  expect(run.err.trimEnd()).not.toContain('\n');
  expect(run.err).not.toContain('\u001b');
  expect({ args, connections: connections - before }).toEqual({ args, connections: 0 });
  expect(existsSync(dataDir)).toBe(false);
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('key set ids, on every command that takes one', () => {
  const BAD_IDS = [
    '.',
    '..',
    'a'.repeat(65),
    'a'.repeat(10_000),
    'ünï',
    'a/b',
    '',
    'web ',
    'a\nb',
    '\u001b[2Jweb',
    'keyset/web',
  ];
  const COMMANDS: [string, (id: string) => string[]][] = [
    ['status', (id) => ['status', id]],
    ['rotate', (id) => ['rotate', id, '--reason', 'drill']],
    ['revoke', (id) => ['revoke', id, KID, '--reason', 'leaked']],
    ['pause', (id) => ['pause', id, '--reason', 'maintenance']],
    ['resume', (id) => ['resume', id]],
    ['verify', (id) => ['verify', id]],
    ['audit', (id) => ['audit', id]],
    ['audit show', (id) => ['audit', 'show', id]],
    ['audit verify', (id) => ['audit', 'verify', id]],
    ['token sign', (id) => ['token', 'sign', id]],
    ['token verify --key-set', (id) => ['token', 'verify', 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln', '--key-set', id]],
  ];

  test.each(COMMANDS)('%s refuses each bad id with the rule, sending nothing', async (_name, command) => {
    for (const id of BAD_IDS) await refused(command(id), 'is not a valid key set id: use 1 to 64 ASCII letters');
  });

  test('a 10,000-character id is quoted shortened; an escape sequence is quoted escaped', async () => {
    await refused(['status', 'a'.repeat(10_000)], `"${'a'.repeat(64)}"… (10000 characters) is not a valid key set id`);
    await refused(['status', '\u001b[2Jweb'], '"\\u001b[2Jweb" is not a valid key set id');
  });

  test('an id starting with "-" is an unknown option to commander', async () => {
    await refused(['status', '-web'], "unknown option '-web'");
  });

  test('apply refuses a file with a bad id before it connects', async () => {
    const file = path.join(scratch, 'keysets.yaml');
    await writeFile(file, 'keySets:\n  - id: ".."\n');
    await refused(['apply', '-f', file], 'line 2: keySets[0].id: ".." is not a valid key set id');
    await refused(['apply', '-f', '/dev/zero'], 'file: is larger than 1 MiB');
  });
});

describe('keyturn token sign', () => {
  test.each([
    ['an array', '[1,2]', '--claims must be a JSON object'],
    ['a string', '"admin"', '--claims must be a JSON object'],
    ['a number', '42', '--claims must be a JSON object'],
    ['null', 'null', '--claims must be a JSON object'],
    ['invalid JSON', '{sub: admin}', '--claims is not valid JSON'],
    ['nothing', '', '--claims is not valid JSON'],
    [
      'an object setting iat',
      '{"scope":"read","iat":1}',
      '--claims must not set iat: keyturn sets iat and exp; choose the lifetime with --ttl',
    ],
    ['an object setting exp', '{"exp":99999999999}', '--claims must not set exp'],
    ['an object setting both', '{"iat":1,"exp":2}', '--claims must not set iat or exp'],
  ])('--claims that is %s is refused', async (_name, claims, message) => {
    await refused(['token', 'sign', 'default', '--claims', claims], message);
  });

  test.each([
    ['soon', 'ttl: "soon" is not a duration'],
    ['', 'ttl: "" is not a duration'],
    ['-5m', 'ttl: "-5m" is not a duration'],
    ['300', 'ttl: "300" is not a duration'],
    ['1.5h', 'ttl: "1.5h" is not a duration'],
    ['5 minutes', 'ttl: "5 minutes" is not a duration'],
    ['999999999999d', 'at most 36500d'],
    ['0s', 'ttl must be at least one second'],
    ['500ms', 'ttl must be at least one second'],
  ])('--ttl %p is refused', async (ttl, message) => {
    await refused(['token', 'sign', 'default', '--ttl', ttl], message);
  });
});

describe('keyturn token verify', () => {
  test.each([
    ['not a URL', 'keys'],
    ['a file URL', 'file:///etc/passwd'],
    ['an FTP URL', 'ftp://keys.example.com/jwks.json'],
  ])('--jwks-url that is %s is refused without quoting it', async (_name, url) => {
    await refused(
      ['token', 'verify', 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln', '--jwks-url', url],
      '--jwks-url must be an http(s) URL',
    );
  });

  test('a token starting with "-" is an unknown option (no JWT starts with one)', async () => {
    await refused(['token', 'verify', '-eyJ', '--key-set', 'default'], "unknown option '-eyJ'");
  });
});

describe('kids starting with "-"', () => {
  test('revoke takes one as the kid: refused for the missing reason, nothing sent', async () => {
    await refused(['revoke', 'default', `-${KID}`], 'revoking a key needs a reason');
    await refused(['revoke', 'default', `--${KID}`], 'revoking a key needs a reason');
  });

  test('revoke with a reason sends it on, given as the argument (even one that starts like -h) or with --kid', async () => {
    for (const args of [
      ['revoke', 'default', `-${KID}`, '--reason', 'leaked'],
      ['revoke', 'default', '-hXyz', '--reason', 'leaked'],
      ['revoke', '--reason', 'leaked', 'default', '-hXyz'],
      ['revoke', 'default', '--kid', '-hXyz', '--reason', 'leaked'],
    ]) {
      const before = connections;
      const run = await keyturn(...args);
      expect({ args, run }).toMatchObject({
        args,
        run: {
          code: 1,
          out: '',
          err: expect.stringMatching(/^keyturn: cannot reach Temporal at 127\.0\.0\.1:\d+ \(from TEMPORAL_ADDRESS\)/),
        },
      });
      expect(connections).toBeGreaterThan(before);
    }
  });

  test('an unknown option elsewhere is still refused, and the kid is named once', async () => {
    await refused(['revoke', 'default', KID, '--bogus', '--reason', 'leaked'], "unknown option '--bogus'");
    await refused(['revoke', 'default', `-${KID}`, '-x', '--reason', 'leaked'], "unknown option '-x'");
    await refused(['revoke', 'default', '--reason', 'leaked'], 'name the key to revoke once');
    await refused(['revoke', 'default', KID, '--kid', KID, '--reason', 'leaked'], 'name the key to revoke once');
  });

  test('an empty kid is refused', async () => {
    await refused(['revoke', 'default', '', '--reason', 'leaked'], 'the kid must not be empty');
  });

  describe('token verify of a token signed by a key whose kid starts with "-"', () => {
    let db: TestDatabase;
    const savedDatabaseUrl = process.env.DATABASE_URL;
    beforeAll(async () => {
      db = await createTestDatabase();
      process.env.DATABASE_URL = db.url;
    });
    afterAll(async () => {
      process.env.DATABASE_URL = savedDatabaseUrl;
      await db?.drop();
    });

    test('verifies it', async () => {
      const keySet = await KeySetDriver.register(
        new KeyStore(db.pool, parseKekRing(KEK)),
        uniqueKeySetId('dash'),
        testPolicy(),
      );
      // A kid is the key's thumbprint: one key in 64 has a kid that starts with "-".
      let kid = await keySet.addNext();
      for (let tries = 0; !kid.startsWith('-'); tries++) {
        if (tries === 2_000) throw new Error('no kid starting with "-" in 2,000 keys');
        await keySet.revoke(kid);
        kid = await keySet.addNext();
      }
      await keySet.promote(kid);

      const signed = await keyturn('token', 'sign', keySet.keySetId, '--sub', 'alice');
      expect(signed).toMatchObject({ code: 0, err: '' });
      const verified = await keyturn('token', 'verify', signed.out.trim(), '--key-set', keySet.keySetId, '--json');
      expect(verified).toMatchObject({ code: 0, err: '' });
      expect(JSON.parse(verified.out)).toMatchObject({ header: { kid }, claims: { sub: 'alice' } });
    }, 120_000);
  });
});
