import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startTestDevStack, type TestDevStack } from '../helpers/dev-stack';

// keyturn as a user gets it: `npm pack`, installed from the tarball into a project of its own, a
// TypeScript program compiled (strict, node16 resolution, so through the `exports` map) against the
// installed types and run against a real dev stack.

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');
const TSC = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');

/** What `npm pack --json` says of a tarball. */
interface PackReport {
  filename: string;
  size: number;
  entryCount: number;
  files: { path: string }[];
}

let tmp: string;
let consumer: string;
let pack: PackReport;
let running: TestDevStack | undefined;

/** The newest modification time of a file under `dir`. */
function newest(dir: string): number {
  return Math.max(
    ...readdirSync(dir, { withFileTypes: true }).map((entry) => {
      const file = path.join(entry.parentPath, entry.name);
      return entry.isDirectory() ? newest(file) : statSync(file).mtimeMs;
    }),
  );
}

async function npm(args: string[], cwd: string): Promise<string> {
  try {
    return (
      await run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, maxBuffer: 64 * 1024 * 1024 })
    ).stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`npm ${args.join(' ')} failed in ${cwd}:\n${stdout ?? ''}${stderr ?? String(error)}`);
  }
}

beforeAll(async () => {
  // The tarball holds dist/: built here when missing or older than the sources (prepack would build
  // it too, but pack runs with --ignore-scripts so that a fresh build is not redone for every run).
  const index = path.join(REPO, 'dist', 'src', 'index.js');
  if (
    !existsSync(index) ||
    !existsSync(path.join(REPO, 'dist', 'workflow-bundle.js')) ||
    statSync(index).mtimeMs < newest(path.join(REPO, 'src'))
  ) {
    await npm(['run', 'build'], REPO);
  }
  tmp = await mkdtemp(path.join(os.tmpdir(), 'keyturn-pack-'));
  [pack] = JSON.parse(
    await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], REPO),
  ) as PackReport[];

  // A project of its own, as a user's: keyturn from the tarball, Node's types, and @types/ms, which
  // @temporalio/common's declarations import without depending on it.
  consumer = path.join(tmp, 'consumer');
  await mkdir(path.join(consumer, 'src'), { recursive: true });
  await writeFile(
    path.join(consumer, 'package.json'),
    JSON.stringify({ name: 'keyturn-consumer', private: true, type: 'commonjs' }),
  );
  await npm(
    ['install', '--prefer-offline', '--ignore-scripts', path.join(tmp, pack.filename), '@types/node@^20', '@types/ms'],
    consumer,
  );
}, 600_000);

afterAll(async () => {
  await running?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

test('the tarball holds the compiled package and nothing else: no tests, no TypeScript sources, no source maps, no secrets', () => {
  const files = pack.files.map((file) => file.path);
  expect(files).toEqual(
    expect.arrayContaining([
      'package.json',
      'README.md',
      'CHANGELOG.md',
      'bin/keyturn.js',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/cli/main.js',
      'dist/src/worker.js',
      'dist/workflow-bundle.js',
      'dist/src/store/migrations/001_init.sql',
    ]),
  );
  const misplaced = files.filter(
    (file) =>
      /(^|\/)(test|tests|bench|__tests__)\//.test(file) ||
      /\.test\.|\.spec\./.test(file) ||
      (file.endsWith('.ts') && !file.endsWith('.d.ts')) ||
      file.endsWith('.map') ||
      /(^|\/)\.env|(^|\/)\.keyturn\/|\.pem$|\.key$|(^|\/)kek$/.test(file) ||
      !/^(package\.json|README\.md|CHANGELOG\.md|LICENSE|bin\/|dist\/src\/|dist\/workflow-bundle\.js$)/.test(file),
  );
  expect(misplaced).toEqual([]);
});

test('a TypeScript program compiles against the installed package and runs against a dev stack: apply, status, sign, verify against the JWKS', async () => {
  await writeFile(
    path.join(consumer, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        // Node 20.19 and later, which keyturn requires, require() ES modules such as jose; module node16 does not know that.
        module: 'node20',
        moduleResolution: 'node16',
        strict: true,
        // The installed declarations are checked too: a type they name must be installed with keyturn.
        skipLibCheck: false,
        types: ['node'],
        outDir: 'dist',
      },
      include: ['src'],
    }),
  );
  await writeFile(path.join(consumer, 'src', 'main.ts'), CONSUMER_PROGRAM);
  await run(process.execPath, [TSC, '-p', consumer], { cwd: consumer }).catch((error: { stdout?: string }) => {
    throw new Error(
      `the consumer program does not compile against the installed keyturn:\n${error.stdout ?? String(error)}`,
    );
  });

  running = await startTestDevStack('pack');
  const { stack, db, kek } = running;
  const keySetId = `library-${randomBytes(3).toString('hex')}`;
  const { stdout } = await run(process.execPath, [path.join(consumer, 'dist', 'main.js'), keySetId], {
    cwd: consumer,
    env: {
      PATH: process.env.PATH,
      TEMPORAL_ADDRESS: stack.temporalAddress,
      TEMPORAL_NAMESPACE: stack.namespace,
      KEYTURN_TASK_QUEUE: stack.taskQueue,
      DATABASE_URL: db.url,
      KEYTURN_KEK: kek,
    },
    timeout: 120_000,
  });
  // The report is all of stdout: the key ring and the JWKS server log to stderr unless given a logger.
  expect(stdout.trim().split('\n')).toHaveLength(1);
  const report = JSON.parse(stdout) as Record<string, unknown>;
  expect(report).toEqual({
    created: true,
    activeKid: expect.any(String),
    states: ['active'],
    tokenKid: report.activeKid,
    verified: true,
    claims: { sub: 'user-42' },
    unknownKeySet: 'ERR_KEYSET_NOT_FOUND',
    deepImport: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
  });
});

/** What a user's deployment script and issuer would write, with keyturn's public API only. */
const CONSUMER_PROGRAM = `
import { createPublicKey, verify, type JsonWebKey } from 'node:crypto';
import { KeyRing, KeySetClient, KeyturnError, parseKekRing, startJwksServer, type KeySetStatus } from 'keyturn';

async function main(): Promise<void> {
  const keySetId = process.argv[2];
  const keySets = await KeySetClient.connect();
  try {
    const applied = await keySets.apply(keySetId, { algorithm: 'ES256', rotationPeriod: '30d' }, { requestedBy: 'pack.test' });
    const activeKid = await keySets.waitForActiveKid(keySetId);
    const status: KeySetStatus = await keySets.getState(keySetId);

    const ring = await KeyRing.open({ databaseUrl: process.env.DATABASE_URL!, kekRing: parseKekRing(process.env.KEYTURN_KEK), keySetIds: [keySetId], publicUrl: 'https://keys.example.com' });
    const token = await ring.sign(keySetId, { sub: 'user-42' }, { ttl: '5m' });
    await ring.close();

    const jwks = await startJwksServer({ port: 0, host: '127.0.0.1', databaseUrl: process.env.DATABASE_URL! });
    const { keys } = (await (await fetch(jwks.url + '/keysets/' + keySetId + '/jwks.json')).json()) as { keys: (JsonWebKey & { kid: string })[] };
    await jwks.close();

    const [header, payload, signature] = token.split('.');
    const { kid } = JSON.parse(Buffer.from(header, 'base64url').toString()) as { kid: string };
    const jwk = keys.find((key) => key.kid === kid);
    const verified = jwk !== undefined && verify('sha256', Buffer.from(header + '.' + payload), { key: createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url'));
    const { sub } = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { sub: string };

    const unknownKeySet = await keySets.getState(keySetId + '-unknown').then(() => 'found', (error: unknown) => (error instanceof KeyturnError ? error.code : String(error)));
    let deepImport = 'imported';
    try {
      require.resolve('keyturn/dist/src/worker.js');
    } catch (error) {
      deepImport = (error as NodeJS.ErrnoException).code ?? String(error);
    }
    console.log(JSON.stringify({
      created: applied.created,
      activeKid,
      states: status.keys.map((key) => key.state).filter((state) => state !== 'next'),
      tokenKid: kid,
      verified,
      claims: { sub },
      unknownKeySet,
      deepImport,
    }));
  } finally {
    await keySets.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
`;
