import { connect, createServer, type Server, type Socket } from 'node:net';

export interface TcpBalancer {
  /** `127.0.0.1:<port>`. */
  address: string;
  port: number;
  close(): Promise<void>;
}

/** How long connecting to one backend may take before the next is tried. */
const CONNECT_TIMEOUT_MS = 1_000;

/**
 * A TCP load balancer on loopback, as a deployment puts in front of several Temporal frontends or
 * JWKS servers: each new connection goes to the next backend in turn, and to the one after it if
 * that one does not accept, so clients reconnecting after a backend died reach one that lives.
 * A connection stays with its backend: it ends when the backend goes.
 */
export async function startTcpBalancer(port: number, backends: readonly number[]): Promise<TcpBalancer> {
  let next = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    const first = next;
    next = (next + 1) % backends.length;
    const attempt = (tried: number) => {
      if (tried === backends.length || client.destroyed) return void client.destroy();
      const backend = connect({ host: '127.0.0.1', port: backends[(first + tried) % backends.length] });
      sockets.add(backend);
      backend.on('close', () => sockets.delete(backend));
      let connected = false;
      const timer = setTimeout(() => backend.destroy(new Error('connect timeout')), CONNECT_TIMEOUT_MS);
      backend.on('error', () => {
        clearTimeout(timer);
        if (connected) client.destroy();
        else attempt(tried + 1);
      });
      backend.once('connect', () => {
        connected = true;
        clearTimeout(timer);
        client.pipe(backend);
        backend.pipe(client);
        backend.on('close', () => client.destroy());
        client.on('close', () => backend.destroy());
        client.resume();
      });
    };
    attempt(0);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, resolve);
  });
  const bound = (server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${bound}`,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
