import { createServer } from 'node:net';
import path from 'node:path';
import { Client } from 'pg';
import type { KeyturnCommand, Stack, StackPorts } from '../../src/stack/stack';
import { TEMPORAL_NODE_PORT_NAMES, type TemporalNodePorts } from '../../src/stack/temporal-node';
import { freePort } from './ports';

/** `keyturn` from the TypeScript sources, for the stack to start its workers, servers and commands with. */
export const KEYTURN_FROM_SOURCE: KeyturnCommand = {
  command: process.execPath,
  args: ['--import', 'tsx', path.join(__dirname, 'keyturn-from-source.ts')],
};

/** Every port a stack needs, each free on loopback now and none twice. */
export async function freeStackPorts(): Promise<StackPorts> {
  const taken = new Set<number>();
  const port = async (): Promise<number> => {
    for (;;) {
      const candidate = await freePort();
      if (!taken.has(candidate)) return (taken.add(candidate), candidate);
    }
  };
  // Temporal records membership ports as a smallint: the system's free ports (32768 and up) will not do.
  const membershipPort = async (): Promise<number> => {
    for (;;) {
      const candidate = 20_000 + Math.floor(Math.random() * 12_000);
      if (!taken.has(candidate) && (await isFree(candidate))) return (taken.add(candidate), candidate);
    }
  };
  const node = async () => {
    const ports: Partial<TemporalNodePorts> = {};
    for (const name of TEMPORAL_NODE_PORT_NAMES)
      ports[name] = name.endsWith('Membership') ? await membershipPort() : await port();
    return ports as TemporalNodePorts;
  };
  return {
    postgres: await port(),
    temporal: await port(),
    temporalNodes: [await node(), await node()],
    webUi: await port(),
    jwks: await port(),
    jwksServers: [await port(), await port()],
    workerMetrics: [
      { keyturn: await port(), sdk: await port() },
      { keyturn: await port(), sdk: await port() },
    ],
    prometheus: await port(),
    alertmanager: await port(),
    alertInbox: await port(),
  };
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen({ host: '127.0.0.1', port, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

/** Runs `sql` on one of the stack's databases as PostgreSQL's superuser. */
export async function querySuperuser<R extends object>(stack: Stack, database: string, sql: string): Promise<R[]> {
  const client = new Client({
    host: '127.0.0.1',
    port: stack.ports.postgres,
    user: 'postgres',
    password: stack.folder.secrets.postgresPassword,
    database,
  });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}
