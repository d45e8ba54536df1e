import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect, type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { ManagedProcess } from '../../src/runtime/managed-process';
import type { TestCertificates } from './certificates';
import { waitFor } from './wait';
import { acceptsConnections } from '../../src/runtime/port-check';
import { freePort } from './ports';

/** Debian's nginx terminating TLS in front of a Temporal frontend, as a secured cluster or Temporal Cloud is reached. */
export interface GrpcTlsProxy {
  /** Verifies client certificates against the test CA (`ssl_verify_client on`); refuses a request without one. */
  mtlsAddress: string;
  /**
   * Takes no client certificate; refuses a request whose `authorization` is not `Bearer <apiKey>`,
   * except that `Bearer <keyWithoutNamespace>` may connect (GetSystemInfo) and is denied everything
   * else, as Temporal Cloud treats a key without access to the namespace.
   */
  apiKeyAddress: string;
  /** One line per request through `mtlsAddress`: the client certificate's subject and the gRPC method. */
  mtlsRequests(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts nginx in the foreground (no daemon, no system service) with a configuration written to
 * `<dir>/nginx`, on free loopback ports. Its refusals are gRPC UNAUTHENTICATED statuses with a
 * message, as a gRPC gateway answers, rather than nginx's HTML error pages.
 */
export async function startGrpcTlsProxy(options: {
  dir: string;
  upstream: string;
  certificates: TestCertificates;
  apiKey: string;
  keyWithoutNamespace: string;
}): Promise<GrpcTlsProxy> {
  const { certificates: certs } = options;
  const prefix = path.join(options.dir, 'nginx');
  await mkdir(prefix, { recursive: true });
  const [mtlsPort, apiKeyPort] = [await freePort(), await freePort()];
  const tls = `ssl_certificate ${certs.serverCert};\n    ssl_certificate_key ${certs.serverKey};`;
  const refuse = (name: string, status: number, message: string) =>
    `location @${name} { default_type application/grpc; add_header grpc-status ${status} always; add_header grpc-message "${message}" always; return 204; }`;
  await writeFile(
    path.join(prefix, 'nginx.conf'),
    `daemon off;
master_process off;
pid nginx.pid;
error_log stderr warn;
events {}
http {
  client_body_temp_path body;
  proxy_temp_path proxy;
  fastcgi_temp_path fastcgi;
  uwsgi_temp_path uwsgi;
  scgi_temp_path scgi;
  log_format method '$ssl_client_s_dn $uri';
  access_log off;
  server {
    listen 127.0.0.1:${mtlsPort} ssl http2;
    ${tls}
    ssl_client_certificate ${certs.ca};
    ssl_verify_client on;
    access_log mtls-requests.log method;
    error_page 495 = @untrusted_certificate;
    error_page 496 = @no_certificate;
    location / { grpc_pass grpc://${options.upstream}; }
    ${refuse('no_certificate', 16, 'client certificate required')}
    ${refuse('untrusted_certificate', 16, 'client certificate not trusted')}
  }
  server {
    listen 127.0.0.1:${apiKeyPort} ssl http2;
    ${tls}
    error_page 401 = @no_api_key;
    error_page 403 = @no_namespace;
    location = /temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo {
      if ($http_authorization !~ "^Bearer (${options.apiKey}|${options.keyWithoutNamespace})$") { return 401; }
      grpc_pass grpc://${options.upstream};
    }
    location / {
      if ($http_authorization = "Bearer ${options.keyWithoutNamespace}") { return 403; }
      if ($http_authorization != "Bearer ${options.apiKey}") { return 401; }
      grpc_pass grpc://${options.upstream};
    }
    ${refuse('no_api_key', 16, 'missing or wrong API key')}
    ${refuse('no_namespace', 7, 'no access to this namespace')}
  }
}
`,
  );
  const nginx = new ManagedProcess({
    name: 'nginx',
    command: 'nginx',
    args: ['-e', 'stderr', '-p', prefix, '-c', 'nginx.conf'],
    ownProcessGroup: false,
  });
  nginx.start();
  // SIGTERM is nginx's fast shutdown.
  const stop = () => nginx.stop();
  try {
    await waitFor(
      async () => {
        if (nginx.couldNotStart)
          throw new Error(`cannot run nginx (${nginx.outputTail(1)}): apt-get install nginx, as .ci/run does`);
        if (!nginx.running) throw new Error(`nginx exited (${nginx.describeExit()}): ${nginx.outputTail()}`);
        return (await acceptsConnections(mtlsPort)) && (await acceptsConnections(apiKeyPort)) ? true : undefined;
      },
      10_000,
      'nginx to listen',
      50,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    mtlsAddress: `127.0.0.1:${mtlsPort}`,
    apiKeyAddress: `127.0.0.1:${apiKeyPort}`,
    mtlsRequests: () => readFile(path.join(prefix, 'mtls-requests.log'), 'utf8').catch(() => ''),
    stop,
  };
}

/**
 * A TLS terminator of Node's own (OpenSSL) in front of the same frontend, verifying the client
 * certificate in the handshake itself, as Temporal's frontend does with `requireClientAuth` (nginx
 * verifies after the handshake and refuses per request): a missing certificate gets a TLS alert,
 * an untrusted one a hang-up.
 */
export async function startHandshakeVerifyingProxy(options: {
  upstream: string;
  certificates: TestCertificates;
}): Promise<{ address: string; stop(): Promise<void> }> {
  const { certificates: certs } = options;
  const [host, port] = options.upstream.split(':');
  const open = new Set<Socket>();
  const server = tls.createServer(
    {
      cert: await readFile(certs.serverCert),
      key: await readFile(certs.serverKey),
      ca: await readFile(certs.ca),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (client) => {
      const upstream = connect(Number(port), host);
      for (const socket of [client, upstream]) {
        open.add(socket);
        socket.once('close', () => open.delete(socket));
      }
      client.pipe(upstream).pipe(client);
      client.once('error', () => upstream.destroy());
      upstream.once('error', () => client.destroy());
    },
  );
  // The refused handshakes are what the test provokes.
  server.on('tlsClientError', () => undefined);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    async stop() {
      for (const socket of open) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
