import type { Command } from 'commander';
import { z } from 'zod';
import { utc } from '../../domain/describe';
import type { RotationResult } from '../../workflows/messages';
import { connectionOptions, keySetIdArgument, parseOptions, requestedBy, withKeySets } from '../operator';

const schema = connectionOptions.extend({
  keySetId: keySetIdArgument,
  reason: z.string().trim().optional(),
  wait: z.boolean().default(false),
  immediately: z.boolean().default(false),
  signal: z.boolean().default(false),
});

/** How long `--wait` waits beyond the moment the key is due to sign (the gate's next look, a busy worker). */
const WAIT_SLACK_MS = 60_000;

export async function rotateAction(id: string, _options: unknown, command: Command): Promise<void> {
  const options = parseOptions(schema, { ...command.opts(), keySetId: id });
  const request = {
    ...(options.reason && { reason: options.reason }),
    requestedBy: requestedBy(),
    immediately: options.immediately,
  };
  await withKeySets(options, async (keySets) => {
    if (options.signal) {
      await keySets.requestRotation(options.keySetId, request);
      console.log(
        options.json
          ? JSON.stringify({ id: options.keySetId, requested: true })
          : `rotation of key set "${options.keySetId}" requested; \`keyturn status ${options.keySetId}\` shows its next key and when it signs`,
      );
      return;
    }
    const result = await keySets.rotate(options.keySetId, request);
    if (options.wait && !result.active) {
      await keySets.waitForActiveKid(
        options.keySetId,
        Math.max(result.signsAt - Date.now(), 0) + WAIT_SLACK_MS,
        result.kid,
      );
      result.active = true;
    }
    console.log(
      options.json
        ? JSON.stringify({ id: options.keySetId, ...result, signsAt: new Date(result.signsAt).toISOString() })
        : describe(options.keySetId, result),
    );
  });
}

function describe(keySetId: string, result: RotationResult): string {
  const previous = result.previousKid ? `; ${result.previousKid} verifies through its grace period` : '';
  if (!result.active) {
    return `key set "${keySetId}": ${result.kid} signs from ${utc(result.signsAt)}, once every verifier's cached JWKS holds it${previous.replace('verifies', 'then verifies')} (--wait waits for it)`;
  }
  const window =
    result.rejectionWindowUntil === undefined
      ? ''
      : `\nwarning: promoted at once as asked: verifiers whose cached JWKS predates ${result.kid} reject its tokens until ${utc(result.rejectionWindowUntil)}`;
  return `key set "${keySetId}" rotated: ${result.kid} is active${previous}${window}`;
}
