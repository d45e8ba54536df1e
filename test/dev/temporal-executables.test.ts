import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  resolveTemporalCli,
  resolveTemporalServer,
  resolveTestServerExecutable,
  TEMPORAL_SERVER_VERSION,
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
  return { env, cacheDir, canDownload: unreachable, allowBuild: false, log: () => {}, ...overrides };
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

    const resolved = await resolveTestServerExecutable(offline({ KEYTURN_CACHE_DIR: cacheDir }, { cacheDir: undefined }));

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

  it('builds the CLI with go into the cache', async () => {
    const fakeGo = '#!/bin/sh\nprintf "#!/bin/sh\\n" > "$GOBIN/temporal" && chmod 755 "$GOBIN/temporal"\n';
    const toolDir = path.dirname(await fakeExecutable(path.join(scratch, 'bin', 'go'), fakeGo));

    const resolved = await resolveTemporalCli(offline({ PATH: `${toolDir}:/usr/bin:/bin` }, { allowBuild: true }));

    const built = path.join(cacheDir, 'temporal-cli-1.5.1', 'temporal');
    expect(resolved).toEqual({ executable: { type: 'existing-path', path: built }, source: 'build' });
  });

  it('builds the Temporal server and its SQL tool, and keeps the schema and configuration of their module', async () => {
    const moduleDir = path.join(scratch, 'gomodcache', `go.temporal.io/server@v${TEMPORAL_SERVER_VERSION}`);
    await mkdir(path.join(moduleDir, 'schema', 'postgresql', 'v12', 'temporal', 'versioned', 'v1.0'), { recursive: true });
    await mkdir(path.join(moduleDir, 'config'), { recursive: true });
    await writeFile(path.join(moduleDir, 'config', 'development-postgres12.yaml'), 'persistence: {}\n');
    // As in Go's module cache: nothing in it is writable.
    await chmod(path.join(moduleDir, 'config', 'development-postgres12.yaml'), 0o444);
    const fakeGo =
      '#!/bin/sh\n' +
      `if [ "$1" = env ]; then echo ${path.join(scratch, 'gomodcache')}; exit 0; fi\n` +
      'for name in server sql; do printf "#!/bin/sh\\n" > "$GOBIN/$name" && chmod 755 "$GOBIN/$name"; done\n';
    const toolDir = path.dirname(await fakeExecutable(path.join(scratch, 'bin', 'go'), fakeGo));

    const installation = await resolveTemporalServer(offline({ PATH: `${toolDir}:/usr/bin:/bin` }, { allowBuild: true }));

    const built = path.join(cacheDir, `temporal-server-${TEMPORAL_SERVER_VERSION}`);
    expect(installation).toEqual({
      server: path.join(built, 'temporal-server'),
      sqlTool: path.join(built, 'temporal-sql-tool'),
      postgresSchemaDir: path.join(built, 'schema', 'postgresql', 'v12'),
      postgresConfigTemplate: path.join(built, 'config', 'development-postgres12.yaml'),
    });
    await expect(readFile(installation.postgresConfigTemplate, 'utf8')).resolves.toBe('persistence: {}\n');
    await expect(stat(path.join(installation.postgresSchemaDir, 'temporal', 'versioned', 'v1.0'))).resolves.toBeTruthy();
    // Found in the cache from now on, without go.
    await expect(resolveTemporalServer(offline({ PATH: path.join(scratch, 'empty') }))).resolves.toEqual(installation);
  });

  it('never waits for a download of the Temporal server: there is none', async () => {
    await expect(resolveTemporalServer(offline({}, { canDownload: async () => true }))).rejects.toMatchObject({
      code: 'ERR_TEMPORAL_EXECUTABLE',
      message: expect.stringContaining(`the Temporal server v${TEMPORAL_SERVER_VERSION} is not built yet: run \`npm run temporal:install\``),
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
