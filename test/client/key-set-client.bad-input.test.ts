import { createServer, type AddressInfo, type Server } from 'node:net';
import { Client, Connection } from '@temporalio/client';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { KeySetClient } from '../../src/client/key-set-client';

// Deployment tooling names key sets through KeySetClient as well as through the CLI and keysets.yaml:
// a bad id is refused there too, before anything reaches Temporal (here: a port counting connections).

let listener: Server;
let connections = 0;
let connection: Connection;
let keySets: KeySetClient;

beforeAll(async () => {
  listener = createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  // Lazy: it connects on its first call, so a refusal before any call leaves the count at zero.
  connection = Connection.lazy({ address: `127.0.0.1:${(listener.address() as AddressInfo).port}` });
  keySets = new KeySetClient(new Client({ connection }), 'keyturn');
});

afterAll(async () => {
  await connection.close();
  await new Promise((resolve) => listener.close(resolve));
});

test.each(['.', '..', 'a'.repeat(65), 'ünï', 'a/b', ''])(
  'the id %p is refused by every operation, nothing sent',
  async (id) => {
    const operations: [string, () => Promise<unknown>][] = [
      ['start', () => keySets.start(id, DEFAULT_POLICY)],
      ['isRunning', () => keySets.isRunning(id)],
      ['getState', () => keySets.getState(id)],
      ['rotate', () => keySets.rotate(id)],
      ['requestRotation', () => keySets.requestRotation(id)],
      ['revoke', () => keySets.revoke(id, 'kid', 'leaked')],
      ['pause', () => keySets.pause(id, 'maintenance')],
      ['resume', () => keySets.resume(id)],
    ];
    for (const [name, operation] of operations) {
      await expect(operation().catch((error: unknown) => ({ name, error }))).resolves.toEqual({
        name,
        error: expect.objectContaining({
          code: 'ERR_KEYSET_ID_INVALID',
          field: 'keySetId',
          message: expect.stringContaining('is not a valid key set id'),
        }),
      });
    }
    expect(connections).toBe(0);
  },
);
