import type { Command } from 'commander';
import { connectionOptions, keySetIdArgument, parseOptions, withKeySets } from '../operator';
import { KeySetDatabase } from '../../client/key-set-database';
import { verifyFleet, verifyKeySet } from '../../client/verify';
import { formatVerification } from '../output';

const schema = connectionOptions.extend({ keySetId: keySetIdArgument.optional() });

export async function verifyAction(id: string | undefined, _options: unknown, command: Command): Promise<void> {
  const options = parseOptions(schema, { ...command.opts(), keySetId: id });
  const results = await withKeySets(options, async (keySets, config) => {
    const database = await KeySetDatabase.open(config);
    if (!database) {
      throw new Error(
        'verify reads the keys from PostgreSQL: set DATABASE_URL, or run it beside `keyturn dev` (--data-dir)',
      );
    }
    try {
      const tolerance = { keyAgeToleranceMs: config.alerts.overdueToleranceMs };
      if (options.keySetId !== undefined) return [await verifyKeySet(keySets, database, options.keySetId, tolerance)];
      return await verifyFleet(keySets, database, tolerance);
    } finally {
      await database.close();
    }
  });
  const failed = results.filter((r) => r.problem !== null || r.violations.length > 0);
  const keySetsJson = results.map((r) => ({
    id: r.keySetId,
    ok: !failed.includes(r),
    violations: r.violations,
    problem: r.problem,
  }));
  console.log(
    options.json ? JSON.stringify({ ok: failed.length === 0, keySets: keySetsJson }) : formatVerification(results),
  );
  if (failed.length > 0) {
    const violations = failed.reduce((sum, r) => sum + r.violations.length + (r.problem ? 1 : 0), 0);
    throw new Error(`${violations} invariant violation(s) in ${failed.length} of ${results.length} key set(s)`);
  }
}
