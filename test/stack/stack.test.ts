import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { Pool } from 'pg';
import { stringify } from 'yaml';
import { parseKekRing } from '../../src/crypto/kek';
import { KeyRing } from '../../src/issuer/key-ring';
import { createLogger } from '../../src/logger';
import { startStack, type Stack } from '../../src/stack/stack';
import { keySetProblems } from '../helpers/key-set-problems';
import { secondsPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';
import { freeStackPorts, KEYTURN_FROM_SOURCE, querySuperuser } from '../helpers/stack';
import { TokenTraffic } from '../helpers/token-traffic';

// keyturn on the production topology, started as `keyturn stack` starts it: PostgreSQL with
// Temporal's and keyturn's databases, a Temporal cluster of two nodes behind a balancer, two workers,
// two JWKS servers behind a balancer, the Web UI, Prometheus and Alertmanager. Key sets with
// seconds-long policies rotate throughout while a key ring signs tokens and a cache-abiding verifier
// per key set checks them; then faults, one after the other. After each: every key set promoted a key
// since, no token was rejected, no key was lost or duplicated, exactly one is active, every lifecycle
// window held (as the audit trail's times show), and `keyturn verify` passes. The steps build on each
// other, so they run in order.

const POLICY = secondsPolicy();
const KEY_SETS = ['life-a', 'life-b', 'life-c'].map(uniqueKeySetId);

/** How long key sets may take to rotate again after a fault: a killed worker's activities are retried once their 10 s timeout ends. */
const RECOVERY_TIMEOUT_MS = 90_000;
/** How long an outage lasts. */
const OUTAGE_MS = 4_000;

// Errors (a server that crashed and was started again) reach the test's output.
const logger = createLogger({ level: process.env.KEYTURN_TEST_STACK_LOG ? 'info' : 'error' });
let dir: string;
let stack: Stack;
let pool: Pool;
let ring: KeyRing;
let traffic: TokenTraffic;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-stack-'));
  // Run as root, PostgreSQL runs as the user postgres, which must get through to its data.
  await chmod(dir, 0o755);
  const keySetsFile = path.join(dir, 'keysets.yaml');
  await writeFile(keySetsFile, stringify({ keySets: KEY_SETS.map((id) => ({ id, ...POLICY })) }));
  stack = await startStack({
    dir: path.join(dir, 'stack'),
    ports: await freeStackPorts(),
    keyturn: KEYTURN_FROM_SOURCE,
    logger,
    keySetsFile,
    alertTimings: { evaluationInterval: '1s', groupWait: '1s', groupInterval: '1s', repeatInterval: '1h' },
  });
  pool = new Pool({ connectionString: stack.ownerDatabaseUrl, max: 4 });
  // PostgreSQL is restarted under idle connections.
  pool.on('error', () => undefined);
  ring = await KeyRing.open({
    databaseUrl: stack.ownerDatabaseUrl,
    kekRing: parseKekRing(stack.folder.secrets.kek),
    logger,
    publicUrl: stack.jwksUrl,
  });
  traffic = new TokenTraffic(ring, stack.jwksUrl, KEY_SETS);
}, 600_000);

afterAll(async () => {
  await traffic?.stop();
  await ring?.close();
  await pool?.end();
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
}, 180_000);

/** How many keys the key set promoted after `since` (epoch ms). */
async function promotionsSince(keySetId: string, since: number): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM audit_events WHERE key_set_id = $1 AND event = 'promoted' AND recorded_at > $2`,
    [keySetId, new Date(since)],
  );
  return rows[0].n;
}

/** Until every key set has promoted `count` keys since `since`; if one does not, the failure says what runs. */
async function untilRotated(since: number, count = 1, what = 'after the fault'): Promise<void> {
  try {
    await Promise.all(
      KEY_SETS.map((id) =>
        waitFor(
          async () => ((await promotionsSince(id, since)) >= count ? true : undefined),
          RECOVERY_TIMEOUT_MS,
          `${id} to promote ${count} key(s) ${what}`,
          250,
        ),
      ),
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${describeKeyturnProcesses()}`, { cause: error });
  }
}

/** Whether each worker and JWKS server runs, with the end of its output. */
function describeKeyturnProcesses(): string {
  return [...stack.workers, ...stack.jwksServers]
    .map(({ process }) => `${process.name}: ${process.describeExit()}; ${process.outputTail(10)}`)
    .join('\n');
}

/** Every key set's problems (none: all is well), and whether `keyturn verify`, run as an operator runs it, passes for each. */
async function checkKeySets(): Promise<{ problems: Record<string, string[]>; verified: Record<string, boolean> }> {
  const problems = Object.fromEntries(
    await Promise.all(KEY_SETS.map(async (id) => [id, await keySetProblems(pool, id, POLICY, traffic)])),
  );
  const output = await stack.keyturn(['verify', '--json'], { LOG_LEVEL: 'warn' });
  const { keySets } = JSON.parse(/^\{"ok".*$/m.exec(output)![0]) as { keySets: { id: string; ok: boolean }[] };
  const verified = Object.fromEntries(KEY_SETS.map((id) => [id, keySets.find((k) => k.id === id)?.ok ?? false]));
  return { problems, verified };
}

const allWell = {
  problems: Object.fromEntries(KEY_SETS.map((id) => [id, []])),
  verified: Object.fromEntries(KEY_SETS.map((id) => [id, true])),
};

describe('the stack', () => {
  test('runs a Temporal cluster of two nodes sharing PostgreSQL, each with every service', async () => {
    // Temporal's own membership table: each node's frontend, history, matching and worker service, alive.
    const members = await querySuperuser<{ role: number; rpc_port: number }>(
      stack,
      'temporal',
      'SELECT role, rpc_port FROM cluster_membership WHERE record_expiry > now() ORDER BY role, rpc_port',
    );
    const nodePorts = stack.ports.temporalNodes.map((n) => [
      n.frontendMembership,
      n.historyMembership,
      n.matchingMembership,
      n.workerMembership,
    ]);
    expect(new Set(members.map((m) => m.role)).size).toBe(4);
    expect(members.map((m) => m.rpc_port).sort()).toEqual(nodePorts.flat().sort());
  });

  test('serves the Web UI, which lists the key sets through the cluster', async () => {
    const listed = await waitFor(
      async () => {
        const query = encodeURIComponent(`KeySetId = '${KEY_SETS[0]}'`);
        const response = await fetch(`${stack.webUiUrl}/api/v1/namespaces/${stack.namespace}/workflows?query=${query}`);
        const body = (await response.json()) as { executions?: { execution: { workflowId: string } }[] };
        return body.executions?.length ? body.executions.map((e) => e.execution.workflowId) : undefined;
      },
      30_000,
      'the key set in the Web UI',
      500,
    );
    expect(listed).toEqual([`keyset/${KEY_SETS[0]}`]);
  });

  test("has Prometheus scrape every worker, JWKS server and SDK exporter, with deploy/'s rules loaded", async () => {
    const health = await waitFor(
      async () => {
        const { data } = (await (await fetch(`${stack.prometheusUrl}/api/v1/targets`)).json()) as {
          data: { activeTargets: { labels: { job: string }; health: string }[] };
        };
        const jobs = data.activeTargets.map((t) => `${t.labels.job} ${t.health}`).sort();
        return jobs.every((j) => j.endsWith(' up')) ? jobs : undefined;
      },
      30_000,
      'every target up',
      500,
    );
    expect(health).toEqual([
      ...Array(2).fill('keyturn-jwks up'),
      ...Array(2).fill('keyturn-worker up'),
      'prometheus up',
      ...Array(2).fill('temporal-sdk up'),
    ]);
    const { data } = (await (await fetch(`${stack.prometheusUrl}/api/v1/rules`)).json()) as {
      data: { groups: { name: string }[] };
    };
    expect(data.groups.map((g) => g.name)).toEqual(expect.arrayContaining(['keyturn-keys', 'keyturn-services']));
  });
});

describe('the lifecycle', () => {
  test('goes through several rotations with no token rejected and every window held', async () => {
    await untilRotated(0, 3, 'in all');
    expect(await checkKeySets()).toEqual(allWell);
  }, 120_000);

  test("logs each audit event as one JSON line in the worker's log that wrote it", async () => {
    // The rows first: a worker logs an event after committing it, so every row read here reaches a log soon.
    const { rows } = await pool.query<{ seq: number; event: string }>(
      'SELECT seq::int AS seq, event FROM audit_events WHERE key_set_id = $1 ORDER BY seq',
      [KEY_SETS[0]],
    );
    const readLogged = async () =>
      (await Promise.all(stack.workers.map((w) => readFile(w.process.spec.logFile!, 'utf8'))))
        // A line still being written has no newline yet: whole lines only.
        .flatMap((log) => log.split('\n').slice(0, -1))
        .filter((line) => line.includes('"msg":"audit event"'))
        .map((line) => (JSON.parse(line) as { audit: { keySetId: string; seq: number; event: string } }).audit)
        .filter((audit) => audit.keySetId === KEY_SETS[0])
        // Two workers write two logs: an event's place is its seq, not the log it is in.
        .sort((a, b) => a.seq - b.seq);
    const logged = await waitFor(
      async () => {
        const audits = await readLogged();
        return audits.length >= rows.length ? audits : undefined;
      },
      10_000,
      "the committed audit events in the workers' logs",
      100,
    );
    expect(logged.map((a) => [a.seq, a.event]).slice(0, rows.length)).toEqual(rows.map((r) => [r.seq, r.event]));
  });
});

describe('faults', () => {
  test('one Temporal node killed: the other serves, and keyturn carries on', async () => {
    const [first] = stack.temporalNodes;
    await first.kill();
    const killedAt = Date.now();
    await untilRotated(killedAt, 1, 'with node 1 down');
    // Operators reach the cluster through the balancer too.
    await expect(stack.keyturn(['status', KEY_SETS[0]])).resolves.toContain(`key set ${KEY_SETS[0]}`);
    await first.start();
    expect(await checkKeySets()).toEqual(allWell);
  }, 180_000);

  test('both Temporal nodes killed, then started again', async () => {
    await Promise.all(stack.temporalNodes.map((node) => node.kill()));
    await sleep(OUTAGE_MS);
    for (const node of stack.temporalNodes) await node.start();
    const restartedAt = Date.now();
    await untilRotated(restartedAt);
    expect(await checkKeySets()).toEqual(allWell);
  }, 180_000);

  test('PostgreSQL restarted under Temporal and keyturn', async () => {
    await stack.postgres.stop();
    await sleep(OUTAGE_MS);
    await stack.postgres.start();
    await untilRotated(Date.now());
    expect(await checkKeySets()).toEqual(allWell);
  }, 180_000);

  test('a worker killed: the other carries on', async () => {
    await stack.workers[0].kill();
    try {
      await untilRotated(Date.now(), 1, 'with worker 1 down');
    } finally {
      await stack.workers[0].start();
    }
    expect(await checkKeySets()).toEqual(allWell);
  }, 180_000);

  test('a worker that crashes by itself is started again, as compose restarts it', async () => {
    const [, second] = stack.workers;
    const crashedPid = second.process.pid!;
    process.kill(crashedPid, 'SIGKILL');
    await waitFor(
      async () => (second.process.running && second.process.pid !== crashedPid ? true : undefined),
      30_000,
      'worker 2 to be started again',
    );
    await untilRotated(Date.now(), 1, 'after worker 2 crashed');
  }, 180_000);

  // The gate checks each server (KEYTURN_JWKS_URL names both): while one is down a next key waits for
  // it, safely, and verifiers fetch from the other through the balancer; back, it serves from the database.
  test('a JWKS server killed: verifiers reach the other, promotions wait for it, then carry on', async () => {
    await stack.jwksServers[0].kill();
    const killedAt = Date.now();
    await sleep(3 * OUTAGE_MS);
    await stack.jwksServers[0].start();
    await untilRotated(killedAt, 1, 'with JWKS server 1 back');
    expect(await checkKeySets()).toEqual(allWell);
  }, 180_000);
});

describe('upgrading', () => {
  /** Temporal's and keyturn's schemas, their recorded versions, the namespace and its search attributes. */
  async function setupState(): Promise<unknown> {
    const schema = (database: string) =>
      querySuperuser(
        stack,
        database,
        `SELECT table_name, column_name, data_type, column_default FROM information_schema.columns WHERE table_schema = 'public'
         UNION ALL SELECT tablename, indexname, indexdef, NULL FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2`,
      );
    return {
      temporal: await schema('temporal'),
      visibility: await schema('temporal_visibility'),
      keyturn: await schema('keyturn'),
      temporalVersions: await querySuperuser(stack, 'temporal', 'SELECT * FROM schema_version'),
      visibilityVersions: await querySuperuser(stack, 'temporal_visibility', 'SELECT * FROM schema_version'),
      temporalUpdates: await querySuperuser(stack, 'temporal', 'SELECT count(*) FROM schema_update_history'),
      migrations: await querySuperuser(stack, 'keyturn', 'SELECT * FROM schema_migrations ORDER BY 1'),
      ...(await namespaceState()),
    };
  }

  async function namespaceState(): Promise<Record<string, unknown>> {
    const connection = await Connection.connect({ address: stack.temporalAddress });
    try {
      const { namespaceInfo, config } = await connection.workflowService.describeNamespace({
        namespace: stack.namespace,
      });
      const { customAttributes } = await connection.operatorService.listSearchAttributes({
        namespace: stack.namespace,
      });
      return {
        namespace: { id: namespaceInfo?.id, retention: config?.workflowExecutionRetentionTtl?.seconds?.toString() },
        customAttributes,
      };
    } finally {
      await connection.close();
    }
  }

  test('the setup steps, run again as a redeploy runs them, change nothing', async () => {
    const before = await setupState();
    await stack.setUp();
    expect(await setupState()).toEqual(before);
  }, 300_000);

  test('a rolling restart of the Temporal nodes onto the same version disturbs no key set mid-lifecycle', async () => {
    const startedAt = Date.now();
    for (const node of stack.temporalNodes) {
      await node.stop();
      await node.start();
    }
    await untilRotated(startedAt, 2, 'across the restart');
    expect(await checkKeySets()).toEqual(allWell);
  }, 180_000);
});

describe('alerting', () => {
  /** The alerts Prometheus holds about `keySetId`: alertname and state. */
  async function prometheusAlerts(keySetId: string): Promise<string[]> {
    const { data } = (await (await fetch(`${stack.prometheusUrl}/api/v1/alerts`)).json()) as {
      data: { alerts: { labels: { alertname: string; key_set?: string }; state: string }[] };
    };
    return data.alerts
      .filter((a) => a.labels.key_set === keySetId)
      .map((a) => `${a.labels.alertname} ${a.state}`)
      .sort();
  }

  /** The headlines of what the inbox received on `channel` about `keySetId`. */
  const received = (channel: string, keySetId: string) =>
    stack.inbox.received
      .filter((n) => n.channel === channel && JSON.stringify(n.body).includes(keySetId))
      .map((n) => n.headline);

  test("a key set whose promotion fails fires keyturn's alerts in Prometheus, Alertmanager delivers them, and they resolve once it is fixed", async () => {
    const keySetId = uniqueKeySetId('alerting');
    const file = path.join(dir, 'alerting.yaml');
    await writeFile(file, stringify({ keySets: [{ id: keySetId, ...POLICY }] }));
    await stack.keyturn(['apply', '-f', file]);
    await waitFor(
      async () => ((await promotionsSince(keySetId, 0)) >= 1 ? true : undefined),
      60_000,
      `${keySetId}'s first key`,
      250,
    );

    // PostgreSQL refuses this key set's promotions, as with a broken constraint: the next one fails all its retries.
    const trigger = `refuse_${keySetId.replaceAll('-', '_')}`;
    await pool.query(
      `CREATE FUNCTION ${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'promotion refused by the test'; END $$`,
    );
    await pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE ON signing_keys FOR EACH ROW
      WHEN (NEW.state = 'active' AND NEW.key_set_id = '${keySetId}') EXECUTE FUNCTION ${trigger}()`);
    let fixed = false;
    const fix = async () => {
      if (fixed) return;
      fixed = true;
      await pool.query(`DROP TRIGGER IF EXISTS ${trigger} ON signing_keys; DROP FUNCTION IF EXISTS ${trigger}()`);
    };
    try {
      const firing = await waitFor(
        async () => {
          const alerts = await prometheusAlerts(keySetId);
          return alerts.includes('KeyturnStepFailing firing') && alerts.includes('KeyturnRotationFailing firing')
            ? alerts
            : undefined;
        },
        120_000,
        `keyturn's alerts about ${keySetId} firing in Prometheus`,
        500,
      );
      expect(firing).toEqual(['KeyturnRotationFailing firing', 'KeyturnStepFailing firing']);
      const delivered = await waitFor(
        () =>
          received('slack', keySetId).some(
            (h) => h.startsWith('FIRING: Key set') && h.includes('failed all its retries'),
          )
            ? received('slack', keySetId)
            : undefined,
        30_000,
        "Alertmanager's Slack message",
        250,
      );
      expect(delivered).toEqual(
        expect.arrayContaining([
          `FIRING: Key set ${keySetId}: a lifecycle step has failed all its retries`,
          `FIRING: Key set ${keySetId}: step promoteNextKey keeps failing`,
        ]),
      );
      // keyturn's own message, straight from the worker.
      expect(received('keyturn', keySetId)).toEqual([
        expect.stringMatching(/^opened: key set ".*": promote failed 1 time\(s\) in a row/),
      ]);

      await fix();
      // The workflow would try again after its backoff (a minute); the operator rotates at once instead,
      // which promotes the waiting next key, and the step's first success closes the incident.
      await stack.keyturn(['rotate', keySetId, '--reason', 'promotions allowed again']);
      await waitFor(
        async () => !(await prometheusAlerts(keySetId)).includes('KeyturnStepFailing firing') || undefined,
        150_000,
        'KeyturnStepFailing to resolve',
        500,
      );
      const resolved = await waitFor(
        () =>
          received('slack', keySetId).find(
            (h) => h === `RESOLVED: Key set ${keySetId}: a lifecycle step has failed all its retries`,
          ),
        30_000,
        "Alertmanager's resolved message",
        250,
      );
      expect(resolved).toBeDefined();
      expect(received('keyturn', keySetId).at(-1)).toMatch(/^resolved: key set ".*" recovered: /);
      // Nothing was paged: both alerts are warnings.
      expect(received('pagerduty', keySetId)).toEqual([]);
    } finally {
      await fix();
    }
    const verified = JSON.parse(
      /^\{"ok".*$/m.exec(await stack.keyturn(['verify', keySetId, '--json'], { LOG_LEVEL: 'warn' }))![0],
    ) as { ok: boolean };
    expect(verified.ok).toBe(true);
  }, 360_000);
});

describe('once every step has run', () => {
  test('no token of any key set was rejected, and tokens were signed and verified throughout', async () => {
    await traffic.stop();
    const { issued, verifiedBeforeExpiry } = traffic.counts;
    console.log(
      `${KEY_SETS.length} key sets: ${issued} tokens signed, ${verifiedBeforeExpiry} verified again shortly before they expired`,
    );
    expect(traffic.rejections).toEqual([]);
    expect(verifiedBeforeExpiry).toBeGreaterThan(KEY_SETS.length * 100);
  }, 60_000);
});
