import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** PEM files made for one test file: a CA, a server and a client certificate it signed, and a client certificate it did not. */
export interface TestCertificates {
  ca: string;
  /** The only name the server certificate is issued to: clients set it as the TLS server name. */
  serverName: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** Signed by a CA of its own, which the server does not trust. */
  strangerCert: string;
  strangerKey: string;
}

/** Makes the certificates in `dir` with openssl (P-256 keys, valid for a day). */
export async function makeTestCertificates(dir: string): Promise<TestCertificates> {
  const file = (name: string) => path.join(dir, name);
  const serverName = 'temporal.keyturn.test';
  await makeCa(dir, 'ca', 'keyturn test CA');
  await makeCa(dir, 'stranger-ca', 'a CA nobody trusts');
  await makeLeaf(
    dir,
    'server',
    'ca',
    serverName,
    `subjectAltName=DNS:${serverName}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`,
  );
  await makeLeaf(dir, 'client', 'ca', 'keyturn-worker', 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n');
  await makeLeaf(
    dir,
    'stranger',
    'stranger-ca',
    'keyturn-worker',
    'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n',
  );
  return {
    ca: file('ca.pem'),
    serverName,
    serverCert: file('server.pem'),
    serverKey: file('server.key'),
    clientCert: file('client.pem'),
    clientKey: file('client.key'),
    strangerCert: file('stranger.pem'),
    strangerKey: file('stranger.key'),
  };
}

const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

async function makeCa(dir: string, name: string, commonName: string): Promise<void> {
  await run(
    'openssl',
    [
      'req',
      '-x509',
      ...NEW_KEY,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '1',
      '-subj',
      `/CN=${commonName}`,
    ],
    { cwd: dir },
  );
}

/** A certificate `ca` signs, with the X.509 v3 extensions rustls (the worker's TLS) insists on. */
async function makeLeaf(dir: string, name: string, ca: string, commonName: string, extensions: string): Promise<void> {
  await writeFile(path.join(dir, `${name}.ext`), extensions);
  await run(
    'openssl',
    ['req', ...NEW_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${commonName}`],
    { cwd: dir },
  );
  await run(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    ],
    { cwd: dir },
  );
}
