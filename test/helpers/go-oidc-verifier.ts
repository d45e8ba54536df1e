import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { isCached, keyturnCacheDir } from './cache';

const run = promisify(execFile);

/** test/oidc/go-verifier: a Go program that verifies a token with github.com/coreos/go-oidc, given only the issuer URL. */
const SOURCE_DIR = path.resolve(__dirname, '../oidc/go-verifier');
/** Where Go usually is when it is not on PATH (the official tarball's place). */
const GO_FALLBACK = '/usr/local/go/bin/go';

/** What go-oidc said of a token: its claims when it verified, else its exit code and reason. */
export type GoOidcVerdict =
  { verified: true; claims: Record<string, unknown> } | { verified: false; exitCode: number; reason: string };

/**
 * The go-oidc verifier, built once per version of its go.sum (cached under ~/.cache/keyturn, or
 * KEYTURN_CACHE_DIR). Fails with what to install when there is no Go.
 */
export async function buildGoOidcVerifier(): Promise<(issuer: string, token: string) => Promise<GoOidcVerdict>> {
  const goSum = await readFile(path.join(SOURCE_DIR, 'go.sum'));
  const source = await readFile(path.join(SOURCE_DIR, 'main.go'));
  const hash = createHash('sha256').update(goSum).update(source).digest('hex').slice(0, 16);
  const cacheDir = keyturnCacheDir();
  const executable = path.join(cacheDir, `go-oidc-verifier-${hash}`, 'go-verifier');
  if (!(await isCached(executable))) await build(executable);
  return async (issuer, token) => {
    try {
      const { stdout } = await run(executable, [issuer, token], { timeout: 30_000 });
      return { verified: true, claims: JSON.parse(stdout) as Record<string, unknown> };
    } catch (error) {
      const failed = error as { code?: number; stderr?: string };
      if (typeof failed.code !== 'number') throw error;
      return { verified: false, exitCode: failed.code, reason: (failed.stderr ?? '').trim() };
    }
  };
}

async function build(executable: string): Promise<void> {
  const go = await findGo();
  const partial = `${path.dirname(executable)}.partial-${process.pid}`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  try {
    // go.sum pins every module; -mod=mod lets Go complete go.mod's indirect requirements from it.
    await run(go, ['build', '-o', path.join(partial, 'go-verifier'), '.'], {
      cwd: SOURCE_DIR,
      env: { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' },
      timeout: 300_000,
    });
    // Renamed whole: a build cut short never passes for a finished one.
    await rename(partial, path.dirname(executable)).catch(async (error: NodeJS.ErrnoException) => {
      // Another test file built it meanwhile.
      if (!(await isCached(executable))) throw error;
    });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`cannot build ${SOURCE_DIR} with ${go}${stderr ? `:\n${stderr}` : ''}`, { cause: error });
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
}

/** `go` on PATH, else the official tarball's place; an error naming what to install when neither runs. */
async function findGo(): Promise<string> {
  for (const candidate of ['go', GO_FALLBACK]) {
    try {
      await run(candidate, ['version']);
      return candidate;
    } catch {
      // Not there: the next one.
    }
  }
  throw new Error(
    'the go-oidc test needs Go 1.23 or newer to build test/oidc/go-verifier, and finds none (neither `go` on PATH ' +
      `nor ${GO_FALLBACK}): install it from https://go.dev/dl (Debian's golang-go is too old); the Go module proxy must be reachable`,
  );
}
