import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, chmod, mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { homedir } from 'node:os';
import path from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import type { EphemeralServerExecutable } from '@temporalio/testing';
import { KeyturnError } from '../domain/errors';
import { acceptsConnections, freeLoopbackPort } from '../runtime/port-check';

/**
 * Finds the Temporal CLI (for `temporal server start-dev`) and the time-skipping test server.
 * Order: an explicit path from the environment, keyturn's cache, the SDK's own download, a build
 * from the package registries (the only network some machines, CI among them, can reach).
 */

const TEMPORAL_CLI_VERSION = '1.5.1';
const TEST_SERVER_VERSION = '1.32.1';

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

type RunTool = (tool: Tool, args: string[], extraEnv?: NodeJS.ProcessEnv) => Promise<void>;

interface ExecutableKind {
  title: string;
  envVar: string;
  cacheEntry: string;
  fileName: string;
  buildOrigin: string;
  buildTime: string;
  /** Fills buildDir, which is renamed to finalDir once complete. */
  buildInto: (buildDir: string, finalDir: string, run: RunTool) => Promise<void>;
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

  if (await (options.canDownload ?? canReachTemporalDownloads)()) {
    return { executable: { type: 'cached-download' }, source: 'download' };
  }
  if (options.allowBuild === false) {
    throw new KeyturnError(
      'ERR_TEMPORAL_EXECUTABLE',
      `${kind.title} is not installed and cannot be downloaded here: run \`npm run temporal:install\` to build it into ${cacheDir}, or set ${kind.envVar}`,
    );
  }
  await build(kind, cacheDir, env, options.log ?? ((line) => process.stderr.write(`${line}\n`)));
  return existingPath(cached, 'build');
}

async function build(kind: ExecutableKind, cacheDir: string, env: NodeJS.ProcessEnv, log: (line: string) => void) {
  log(
    `keyturn: building ${kind.title} from ${kind.buildOrigin} (temporal.download is unreachable from here); ` +
      `this takes ${kind.buildTime}, once`,
  );
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
      const record = (chunk: Buffer) => transcript.push(chunk.toString());
      child.stdout.on('data', record);
      child.stderr.on('data', record);
      child.on('error', (error: NodeJS.ErrnoException) => {
        const reason =
          error.code === 'ENOENT'
            ? `building ${kind.title} needs \`${tool.command}\`, which is not on PATH: ${tool.install}, or set ${kind.envVar}`
            : `could not run \`${tool.command}\` to build ${kind.title}: ${error.message}`;
        fail(new KeyturnError('ERR_TEMPORAL_EXECUTABLE', reason, { cause: error }));
      });
      child.on('close', (exitCode) => {
        if (exitCode === 0) return settle();
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
