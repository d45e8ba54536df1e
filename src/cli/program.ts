import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { DATA_DIR_OPTION, parsePort } from './options';

/**
 * The command tree: names, arguments, options and descriptions only. Each action loads its command's
 * module when it runs, so `keyturn --help` or `keyturn status` never loads the worker, the JWKS server
 * or a database driver it does not use. Keep this file's imports to commander and node built-ins.
 */

type Action = (...args: never[]) => Promise<void>;

/** An action that loads its implementation when the command runs. */
function lazy<M>(load: () => Promise<M>, pick: (module: M) => Action): (...args: unknown[]) => Promise<void> {
  return async (...args) => (pick(await load()) as (...args: unknown[]) => Promise<void>)(...args);
}

/** `--address`, `--namespace`, `--data-dir` and `--json`: what the commands that talk to Temporal share. */
function withConnectionOptions(command: Command): Command {
  return command
    .option(
      '--address <host:port>',
      "Temporal frontend (default: TEMPORAL_ADDRESS or the Temporal profile's, else the keyturn instance running on --data-dir, else localhost:7233)",
    )
    .option(
      '--namespace <name>',
      "Temporal namespace (default: TEMPORAL_NAMESPACE or the Temporal profile's, else the running instance's, else default)",
    )
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the result as JSON');
}

/** The version in keyturn's package.json, two folders up from the sources and three from the build (dist/src/cli). */
function packageVersion(): string {
  for (const up of ['../..', '../../..']) {
    try {
      const manifest = JSON.parse(readFileSync(path.join(__dirname, up, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (manifest.name === 'keyturn' && manifest.version) return manifest.version;
    } catch {
      // Not this folder.
    }
  }
  return 'unknown';
}

/** The `keyturn` root command. Commands never exit the process: they return or throw, and runCli decides. */
export function createProgram(): Command {
  const program = new Command('keyturn')
    .description('JWT signing-key rotation on Temporal')
    .version(packageVersion(), '-V, --version', 'print the version of keyturn')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`keyturn: ${text.replace(/^error: /, '')}`) });
  // program.command() passes these settings on to each subcommand (exitOverride, output), unlike addCommand.

  program
    .command('dev')
    .description(
      'run keyturn on this machine until Ctrl-C: embedded PostgreSQL, a Temporal dev server with its Web UI, ' +
        'the worker, the JWKS server, the signing service (no client until `keyturn signer client add`), and an apply of the key sets file (the PostgreSQL of DATABASE_URL, and the Temporal server TEMPORAL_ADDRESS ' +
        'or a Temporal profile names, are used instead when set)',
    )
    .option('-f, --file <file>', 'the key sets file to apply', 'keysets.yaml')
    .option(...DATA_DIR_OPTION)
    .option('--temporal-port <port>', 'port of the Temporal dev server', parsePort, 7233)
    .option('--ui-port <port>', 'port of the Temporal Web UI (default: the Temporal port + 1000)', parsePort)
    .option('--pg-port <port>', 'port of the embedded PostgreSQL (default: KEYTURN_PG_PORT or 5433)', parsePort)
    .option('--port <port>', 'port of the JWKS server (default: PORT or 8080)', parsePort)
    .option('--signer-port <port>', 'port of the signing service (default: KEYTURN_SIGNER_PORT or 8081)', parsePort)
    .action(
      lazy(
        () => import('./commands/dev.js'),
        (m) => m.devAction,
      ),
    );

  program
    .command('stack')
    .description(
      'run the production topology on this machine until Ctrl-C, as docker-compose.yml describes it, without containers: ' +
        'PostgreSQL with separate databases and roles for Temporal and keyturn, a Temporal cluster of two nodes with its Web UI, ' +
        'two workers, two JWKS servers, Prometheus and Alertmanager (Debian packages) alerting into a local inbox, and an ' +
        'apply of the key sets file. The Temporal server and UI are built from the Go module proxy on first use (minutes, once)',
    )
    .option('-f, --file <file>', 'the key sets file to apply (none applied if it does not exist)', 'keysets.yaml')
    .option(...DATA_DIR_OPTION)
    .option('--no-ui', 'run without the Temporal Web UI (it need not be built then)')
    .action(
      lazy(
        () => import('./commands/stack.js'),
        (m) => m.stackAction,
      ),
    );

  program
    .command('worker')
    .description(
      'run the worker until SIGINT or SIGTERM: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and the other TEMPORAL_* settings ' +
        '(TLS, API key, TEMPORAL_PROFILE), KEYTURN_TASK_QUEUE; ' +
        'DATABASE_URL with KEYTURN_KEK, or the embedded database of the data folder',
    )
    .option(...DATA_DIR_OPTION)
    .action(
      lazy(
        () => import('./commands/worker.js'),
        (m) => m.workerAction,
      ),
    );

  program
    .command('serve')
    .description(
      'serve the JWKS and discovery documents until SIGINT or SIGTERM: PORT (default 8080); DATABASE_URL as a role ' +
        'that reads the published keys only (KEYTURN_JWKS_ROLE, set up by `keyturn migrate`), or the database of the ' +
        'keyturn instance running on the data folder. Needs no KEK and changes nothing in the database',
    )
    .option(...DATA_DIR_OPTION)
    .option('--port <port>', 'port to listen on (default: PORT or 8080)', parsePort)
    .option('--host <host>', 'interface to listen on (default: every interface)')
    .action(
      lazy(
        () => import('./commands/serve.js'),
        (m) => m.serveAction,
      ),
    );

  const signer = program
    .command('signer')
    .description(
      'run the signing service until SIGINT or SIGTERM: POST /v1/keysets/{id}/sign signs with the active key for ' +
        'authenticated clients (`keyturn signer client add`). KEYTURN_SIGNER_PORT (8081) and KEYTURN_SIGNER_HOST (127.0.0.1); ' +
        'TLS with KEYTURN_SIGNER_TLS_CERT_FILE and _KEY_FILE, client certificates with _CLIENT_CA_FILE; ' +
        'DATABASE_URL as KEYTURN_SIGNER_ROLE with KEYTURN_KEK, or the keyturn instance running on the data folder',
    )
    .option(...DATA_DIR_OPTION)
    .option('--port <port>', 'port to listen on (default: KEYTURN_SIGNER_PORT or 8081)', parsePort)
    .option('--host <host>', 'interface to listen on (default: KEYTURN_SIGNER_HOST or 127.0.0.1)')
    .action(
      lazy(
        () => import('./commands/signer.js'),
        (m) => m.signerAction,
      ),
    );
  const signerClient = signer
    .command('client')
    .description('the clients that may sign through `keyturn signer`: add, list, revoke');
  signerClient
    .command('add')
    .description(
      'add a client that may sign for the given key sets; prints its bearer secret once (PostgreSQL keeps only its hash), ' +
        'or, with --cert-subject, maps a client certificate to it',
    )
    .argument('<name>', 'client name, e.g. billing-api')
    .option('--key-sets <ids>', 'the key sets it may sign for, separated by commas')
    .option('--expires <duration>', 'the client stops working this long from now, e.g. 90d')
    .option(
      '--pin <claim=value>',
      'a claim every token of this client carries and its requests may not change, e.g. aud=api (repeatable; JSON for arrays)',
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option('--rate <rate>', "its own rate instead of KEYTURN_SIGNER_RATE's, e.g. 50/s")
    .option('--burst <n>', 'its burst with --rate (default two seconds of its rate)')
    .option(
      '--cert-subject <subject>',
      "identify it by its client certificate's subject, e.g. 'CN=billing', instead of a secret",
    )
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the client (and its secret) as JSON')
    .action(
      lazy(
        () => import('./commands/signer.js'),
        (m) => m.clientAddAction,
      ),
    );
  signerClient
    .command('list')
    .description(
      'every signing client: key sets, pinned claims, how it authenticates, expiry, revocation; never a secret',
    )
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the clients as a JSON array')
    .action(
      lazy(
        () => import('./commands/signer.js'),
        (m) => m.clientListAction,
      ),
    );
  signerClient
    .command('revoke')
    .description('revoke a client: running signers refuse it as soon as the change notice reaches them')
    .argument('<name>', 'client name')
    .option('--reason <text>', 'why (required), for the audit trail')
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the outcome as JSON')
    .action(
      lazy(
        () => import('./commands/signer.js'),
        (m) => m.clientRevokeAction,
      ),
    );

  program
    .command('migrate')
    .description(
      "apply the database migrations as the schema's owner, grant KEYTURN_JWKS_ROLE, KEYTURN_WORKER_ROLE and " +
        'KEYTURN_SIGNER_ROLE their rights, ' +
        'and print the versions applied',
    )
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the result as JSON')
    .action(
      lazy(
        () => import('./commands/migrate.js'),
        (m) => m.migrateAction,
      ),
    );

  withConnectionOptions(program.command('apply'))
    .description(
      'start or update the key sets a YAML file lists, and the supervisor schedule; the whole file is checked first, ' +
        'and nothing is applied if any of it is wrong. Safe to run again: what already matches is left alone',
    )
    .requiredOption('-f, --file <file>', 'the key sets file, e.g. keysets.yaml')
    .option(
      '--prune',
      'decommission running key sets the file does not list (their keys retire through grace as usual)',
    )
    .option('--dry-run', 'print what would change, and change nothing')
    // The default is src/client/apply.ts's DEFAULT_APPLY_CONCURRENCY (test/cli/program.test.ts holds them together).
    .option('--concurrency <n>', 'how many key sets are applied at once (default 32)')
    .action(
      lazy(
        () => import('./commands/apply.js'),
        (m) => m.applyAction,
      ),
    );

  withConnectionOptions(program.command('status'))
    .description(
      "a key set's keys with their states and times, policy, pause, next transition and last error; without an id, one line per key set",
    )
    .argument('[id]', 'key set id')
    .option(
      '--timeline',
      "draw the key set's keys' past and planned periods (next, active, grace, retired) as a chart; with --json, its rows",
    )
    .option('--mermaid', 'the same chart as a Mermaid gantt block')
    .action(
      lazy(
        () => import('./commands/status.js'),
        (m) => m.statusAction,
      ),
    );

  withConnectionOptions(program.command('rotate'))
    .description(
      'rotate a key set: prints the key that will sign and when. It signs once verifiers can have cached it ' +
        '(at once if the published next key already has been listed for jwksMaxAge), so no valid token is rejected',
    )
    .argument('<id>', 'key set id')
    .option('--reason <text>', 'why, for the audit trail')
    .option('--wait', 'wait until the new key signs')
    .option(
      '--immediately',
      'promote now, accepting that verifiers whose cached JWKS predates the key reject its tokens until it expires',
    )
    .option('--signal', 'only ask (signal requestRotation) and return at once; the workflow retries it if it fails')
    .action(
      lazy(
        () => import('./commands/rotate.js'),
        (m) => m.rotateAction,
      ),
    );

  withConnectionOptions(program.command('revoke'))
    .description(
      'emergency revocation: the key leaves the JWKS at once and its private part is erased; an active key is replaced at once',
    )
    .argument('<id>', 'key set id')
    .argument(
      '[kid]',
      "the key to revoke (`keyturn status <id>` lists them); one starting with '-' is taken as the kid too",
    )
    .option('--kid <kid>', 'the key to revoke, instead of the argument')
    .option('--reason <text>', 'why (required), for the audit trail')
    .action(
      lazy(
        () => import('./commands/revoke.js'),
        (m) => m.revokeAction,
      ),
    );

  withConnectionOptions(program.command('pause'))
    .description('stop scheduled transitions of a key set until `keyturn resume`; rotate and revoke still work')
    .argument('<id>', 'key set id')
    .option('--reason <text>', 'why (required)')
    .action(
      lazy(
        () => import('./commands/pause.js'),
        (m) => m.pauseAction,
      ),
    );

  withConnectionOptions(program.command('resume'))
    .description('restart the scheduled transitions of a paused key set; overdue ones run at once')
    .argument('<id>', 'key set id')
    .action(
      lazy(
        () => import('./commands/resume.js'),
        (m) => m.resumeAction,
      ),
    );

  withConnectionOptions(program.command('verify'))
    .description(
      "check each key set's workflow state against PostgreSQL (one active key, same states and times, none overdue, " +
        'every kid the thumbprint of its public key); ' +
        'exit code 0 only if every invariant holds. Without an id, every key set in the database',
    )
    .argument('[id]', 'key set id')
    .action(
      lazy(
        () => import('./commands/verify.js'),
        (m) => m.verifyAction,
      ),
    );

  // `show` is the default subcommand, so `keyturn audit <id>` reads a trail and `keyturn audit verify`
  // checks the chains; a key set that happens to be named `verify` is read with `keyturn audit show verify`.
  const audit = program
    .command('audit')
    .description(
      "a key set's tamper-evident audit trail (`keyturn audit <id> [--since] [--json]`); `keyturn audit verify [<id>]` checks the hash chains",
    );
  audit
    .command('show', { isDefault: true })
    .description(
      "print a key set's audit trail, oldest first: time, seq, event, kid, states, trigger, actor, reason (the default: `keyturn audit <id>`)",
    )
    .argument('<id>', 'key set id')
    .option(
      '--since <time>',
      'only events from then on: an ISO 8601 time (UTC unless it has a zone) or a duration back from now, e.g. 7d',
    )
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the events as a JSON array, with details and hashes')
    .action(
      lazy(
        () => import('./commands/audit.js'),
        (m) => m.auditShowAction,
      ),
    );
  audit
    .command('verify')
    .description(
      "check each key set's audit hash chain: every event unedited, none deleted (the newest included); " +
        'exit code 0 only if every chain is intact. Without an id, every key set in the database',
    )
    .argument('[id]', 'key set id')
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the result as JSON, with each chain head (worth keeping outside the database)')
    .action(
      lazy(
        () => import('./commands/audit.js'),
        (m) => m.auditVerifyAction,
      ),
    );

  const kek = program
    .command('kek')
    .description(
      'roll the key-encryption key: `keyturn kek status` shows which KEK seals how many private keys, ' +
        '`keyturn kek rewrap` re-seals them under the current one',
    );
  kek
    .command('status')
    .description(
      'the configured KEK ids (current first) and how many stored private keys each seals; a KEK id in the database that is ' +
        'not configured is flagged and makes the exit code 1: its keys cannot be opened',
    )
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the result as JSON')
    .action(
      lazy(
        () => import('./commands/kek.js'),
        (m) => m.kekStatusAction,
      ),
    );
  kek
    .command('rewrap')
    .description(
      'decrypt every stored private key that an older KEK seals and seal it under the current one (the first configured), ' +
        'one transaction and one audit event per key set; running it again changes nothing',
    )
    .option('--reason <text>', 'why, for the audit trail (default: KEK rolled)')
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the result as JSON')
    .action(
      lazy(
        () => import('./commands/kek.js'),
        (m) => m.kekRewrapAction,
      ),
    );

  const token = program.command('token').description('sign and verify tokens');
  token
    .command('sign')
    .description("print a JWT signed with the key set's active key, as the key ring signs them")
    .argument('<id>', 'key set id')
    .option('--sub <subject>', 'the sub claim')
    .option(
      '--ttl <duration>',
      "lifetime, e.g. 15m (default and maximum: the policy's maxTokenTtl, within KEYTURN_MAX_TOKEN_TTL_CEILING)",
    )
    .option('--claims <json>', 'further claims as a JSON object')
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the token with its kid, alg, iat and exp as JSON')
    .action(
      lazy(
        () => import('./commands/token.js'),
        (m) => m.tokenSignAction,
      ),
    );
  token
    .command('verify')
    .description(
      "verify a JWT against a key set's published keys (from PostgreSQL) or a JWKS URL, and print its header and claims",
    )
    .argument('<jwt>', 'the token')
    .option('--key-set <id>', 'verify against this key set, read from the database')
    .option('--jwks-url <url>', 'verify against the JWKS at this URL')
    .option(...DATA_DIR_OPTION)
    .option('--json', 'print the header and claims as one line of JSON')
    .action(
      lazy(
        () => import('./commands/token.js'),
        (m) => m.tokenVerifyAction,
      ),
    );

  program
    .command('completion')
    .description(
      'print a shell completion script for keyturn, e.g. `source <(keyturn completion bash)` or, in zsh, `source <(keyturn completion zsh)`',
    )
    .argument('<shell>', 'bash or zsh')
    .action(
      lazy(
        () => import('./completion.js'),
        (m) => m.completionAction,
      ),
    );

  return program;
}
