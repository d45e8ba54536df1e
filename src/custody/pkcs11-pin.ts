import { readFile } from 'node:fs/promises';
import type { Pkcs11CustodySettings } from '../domain/custody-settings';
import { KeyturnError } from '../domain/errors';

/** Where a token's user PIN is read from, each time the token is logged in to; the PIN itself is never kept. */
export interface PinSource {
  /** The settings field that names the source, for errors. */
  field: 'pinFile' | 'pinEnv';
  /** The source in words ("PIN file /run/keyturn/pin"), for errors. */
  description: string;
  read(): Promise<string>;
}

/** The PIN source the settings name: exactly one of pinFile and pinEnv. */
export function pinSourceOf(settings: Pkcs11CustodySettings): PinSource {
  const { pinFile, pinEnv } = settings;
  if ((pinFile === undefined || pinFile === '') === (pinEnv === undefined || pinEnv === '')) {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      `the pkcs11 custody of token "${settings.tokenLabel}" needs exactly one of custody.pinFile (a file holding the ` +
        `token's user PIN) and custody.pinEnv (the environment variable holding it)`,
      { field: pinFile === undefined || pinFile === '' ? 'pinFile' : 'pinEnv' },
    );
  }
  if (pinFile !== undefined && pinFile !== '') return pinFileSource(pinFile);
  return pinEnvSource(pinEnv as string);
}

function pinFileSource(pinFile: string): PinSource {
  const description = `PIN file ${pinFile}`;
  return {
    field: 'pinFile',
    description,
    async read() {
      let text: string;
      try {
        text = await readFile(pinFile, 'utf8');
      } catch (error) {
        const reason = (error as NodeJS.ErrnoException).code ?? 'unreadable';
        throw new KeyturnError(
          'ERR_CONFIG_INVALID',
          `cannot read the ${description} (${reason}): create it, readable only by keyturn (mode 0600), holding the token's user PIN`,
          { field: 'pinFile', cause: error },
        );
      }
      return nonEmpty(
        text.replace(/\r?\n$/, ''),
        'pinFile',
        `the ${description} is empty: write the token's user PIN into it`,
      );
    },
  };
}

function pinEnvSource(pinEnv: string): PinSource {
  return {
    field: 'pinEnv',
    description: `environment variable ${pinEnv}`,
    async read() {
      return nonEmpty(
        process.env[pinEnv] ?? '',
        'pinEnv',
        `the environment variable ${pinEnv} is not set or empty: set it to the token's user PIN`,
      );
    },
  };
}

function nonEmpty(pin: string, field: PinSource['field'], message: string): string {
  if (pin === '') throw new KeyturnError('ERR_CONFIG_INVALID', message, { field });
  return pin;
}
