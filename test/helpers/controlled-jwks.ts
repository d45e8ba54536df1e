import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ControlledJwks {
  url: string;
  /** The kids the JWKS lists; the test adds and removes them. */
  kids: Set<string>;
  close(): Promise<void>;
}

/** A JWKS URL on loopback that lists exactly the kids the test lets it, like a CDN yet to catch up. */
export async function startControlledJwks(): Promise<ControlledJwks> {
  const kids = new Set<string>();
  const server: Server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ keys: [...kids].map((kid) => ({ kty: 'OKP', crv: 'Ed25519', x: 'AA', kid })) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/jwks.json`,
    kids,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
