import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Listens on `port` (0: a free one) and `host`; resolves with the base URL, e.g. `http://127.0.0.1:8080`. */
export function listen(server: Server, port: number, host: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const { address, port: bound, family } = server.address() as AddressInfo;
      // An unspecified address is no place to send anyone: name the loopback of the same family.
      const shown = address === '0.0.0.0' ? '127.0.0.1' : address === '::' ? '::1' : address;
      resolve(`http://${family === 'IPv6' ? `[${shown}]` : shown}:${bound}`);
    });
  });
}
