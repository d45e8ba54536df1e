import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, chmod, cp, mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { homedir } from 'node:os';
import path from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import type { EphemeralServerExecutable } from '@temporalio/testing';
import { KeyturnError } from '../domain/errors';
import { acceptsConnections, freeLoopbackPort } from '../runtime/port-check';

/**
 * Finds the Temporal CLI (for `temporal server start-dev`), the time-skipping test server, and for
 * `keyturn stack` the Temporal server with its SQL tool and the Web UI server. Order: an explicit
 * path from the environment, keyturn's cache, the SDK's own download (CLI and test server only), a
 * build from the package registries (the only network some machines, CI among them, can reach).
 */

const TEMPORAL_CLI_VERSION = '1.5.1';
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
  log?: (line: string) => void;
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
    const probe = request('https://temporal.download/', { method: 'HEAD', signal: AbortSignal.timeout(3_000) }, (res) => {
      res.resume();
      settle(true);
    });
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
  /** Fills buildDir, which is renamed to finalDir once complete. */
  buildInto: (buildDir: string, finalDir: string, run: RunTool) => Promise<unknown>;
  /** Work that needs the build at its final path; best effort (the executable works without it). */
  settleIn?: (finalDir: string) => Promise<void>;
}

const go: Tool = { command: 'go', install: 'install Go 1.25 or newer' };
const java: Tool = { command: 'java', install: 'install Java 8 or newer (e.g. apt-get install default-jre-headless)' };
const maven: Tool = { command: 'mvn', install: 'install Maven (e.g. apt-get install maven)' };

const temporalCli: ExecutableKind = {
  title: `the Temporal CLI v${TEMPORAL_CLI_VERSION}`,
  envVar: 'TEMPORAL_CLI_PATH',
  cacheEntry: `temporal-cli-${TEMPORAL_CLI_VERSION}`,
  fileName: 'temporal',
  buildOrigin: 'the Go module proxy',
  buildTime: 'about 4 minutes',
  downloadable: true,
  // Later CLI versions carry a replace directive, which go install refuses.
  buildInto: (buildDir, _finalDir, run) =>
    run(go, ['install', '-ldflags=-s -w', `github.com/temporalio/cli/cmd/temporal@v${TEMPORAL_CLI_VERSION}`], {
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
    await run(maven, ['-q', '-B', '-f', pom, 'dependency:copy-dependencies', `-DoutputDirectory=${path.join(buildDir, 'lib')}`]);
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
    await run(go, ['install', '-ldflags=-s -w', `${SERVER_MODULE}/cmd/server${version}`, `${SERVER_MODULE}/cmd/tools/sql${version}`], {
      GOBIN: buildDir,
    });
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
    await run(go, ['install', '-ldflags=-s -w', `github.com/temporalio/ui-server/v2/cmd/server@v${TEMPORAL_UI_VERSION}`], { GOBIN: buildDir });
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
    [`-XX:ArchiveClassesAtExit=${path.join(finalDir, TEST_SERVER_CLASS_ARCHIVE)}`, '-cp', testServerClassPath(finalDir), 'io.temporal.testserver.TestServer', String(port)],
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
  const cached = path.join(cacheDir, kind.cacheEntry, kind.fileName);
  if (await isExecutableFile(cached)) return existingPath(cached, 'cache');

  if (kind.downloadable && (await (options.canDownload ?? canReachTemporalDownloads)())) {
    return { executable: { type: 'cached-download' }, source: 'download' };
  }
  if (options.allowBuild === false) {
    throw new KeyturnError(
      'ERR_TEMPORAL_EXECUTABLE',
      `${kind.title} is not ${kind.downloadable ? 'installed and cannot be downloaded here' : 'built yet'}: run \`npm run temporal:install\` to build it into ${cacheDir}, or set ${kind.envVar}`,
    );
  }
  await build(kind, cacheDir, env, options.log ?? ((line) => process.stderr.write(`${line}\n`)));
  return existingPath(cached, 'build');
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
  const progress = setInterval(() => log(`keyturn: still building ${kind.title}, ${elapsedSince(started)} so far`), 30_000);
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
  await kind.settleIn?.(finalDir).catch((error: Error) => log(`keyturn: ${kind.title} works, without a speed-up that failed: ${error.message}`));
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
