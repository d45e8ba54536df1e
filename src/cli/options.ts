import { InvalidArgumentError } from 'commander';

/** Options several commands share, parsed where commander can name the flag in its error. */

export function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535)
    throw new InvalidArgumentError('must be a port number from 1 to 65535.');
  return port;
}

export const DATA_DIR_OPTION = [
  '--data-dir <dir>',
  'folder of the embedded data and instance.json (default: KEYTURN_DATA_DIR or .keyturn)',
] as const;
