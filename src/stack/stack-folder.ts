import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * The passwords and the KEK of a stack, made on its first start and kept beside its data: the
 * values docker-compose.yml takes from .env. The databases' passwords take effect when PostgreSQL's
 * data is first created, so they live as long as it does.
 */
export interface StackSecrets {
  postgresPassword: string;
  temporalDbPassword: string;
  keyturnDbPassword: string;
  keyturnWorkerDbPassword: string;
  keyturnJwksDbPassword: string;
  keyturnSignerDbPassword: string;
  /** KEYTURN_KEK: base64, 32 bytes. */
  kek: string;
}

/** The file name of each secret under `secrets/`, as compose names the values (.env.example). */
const SECRET_FILES: Record<keyof StackSecrets, string> = {
  postgresPassword: 'postgres_password',
  temporalDbPassword: 'temporal_db_password',
  keyturnDbPassword: 'keyturn_db_password',
  keyturnWorkerDbPassword: 'keyturn_worker_db_password',
  keyturnJwksDbPassword: 'keyturn_jwks_db_password',
  keyturnSignerDbPassword: 'keyturn_signer_db_password',
  kek: 'keyturn_kek',
};

/** A stack's folder: data, generated configuration, secrets and logs. */
export class StackFolder {
  private constructor(
    readonly root: string,
    readonly secrets: StackSecrets,
  ) {}

  /** Opens `root`, making it and its secrets the first time. */
  static async open(root: string): Promise<StackFolder> {
    const dir = path.resolve(root);
    await mkdir(path.join(dir, 'logs'), { recursive: true });
    // Run as root, PostgreSQL runs as the user `postgres`, which must get through to its data folder.
    await chmod(dir, 0o755);
    await mkdir(path.join(dir, 'secrets'), { recursive: true, mode: 0o700 });
    const secrets = {} as StackSecrets;
    for (const [name, file] of Object.entries(SECRET_FILES) as [keyof StackSecrets, string][]) {
      const where = path.join(dir, 'secrets', file);
      if (!existsSync(where)) {
        // Hex: a password goes into connection URLs as it is.
        await writeFile(
          where,
          `${randomBytes(name === 'kek' ? 32 : 24).toString(name === 'kek' ? 'base64' : 'hex')}\n`,
          { mode: 0o600 },
        );
      }
      secrets[name] = (await readFile(where, 'utf8')).trim();
    }
    return new StackFolder(dir, secrets);
  }

  path(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  secretFile(name: string): string {
    return this.path('secrets', name);
  }

  logFile(name: string): string {
    return this.path('logs', `${name}.log`);
  }

  /** Writes a secret file the stack derives from others (a database URL, a webhook URL) on every start. */
  async writeSecret(name: string, value: string): Promise<string> {
    const file = this.secretFile(name);
    await writeFile(file, `${value}\n`, { mode: 0o600 });
    return file;
  }
}
