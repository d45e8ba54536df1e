import { escapeIdentifier, type Pool, type PoolClient } from 'pg';
import { KeyturnError } from '../domain/errors';
import { withMigrationLock } from './migrate';

/** The roles keyturn's processes log in as, besides the schema owner that runs `keyturn migrate`. */
export interface DatabaseRoles {
  /** `keyturn serve` (KEYTURN_JWKS_ROLE): reads the views of published keys and nothing else. */
  jwks: string;
  /** The worker and the CLI (KEYTURN_WORKER_ROLE): reads and writes rows, never the schema. */
  worker: string;
  /** `keyturn signer` (KEYTURN_SIGNER_ROLE): reads what the key ring reads and the signing clients, appends denials. */
  signer: string;
}

/**
 * Each role's privileges, relation by relation: exactly what its process does, so a new table, or a
 * new kind of write to an old one, needs a line here (test/store/database-roles.test.ts checks that
 * every relation has one). The sequences behind the tables a role inserts into come with them.
 */
export const ROLE_PRIVILEGES: Record<keyof DatabaseRoles, Record<string, string>> = {
  jwks: {
    published_keys: 'SELECT',
    published_key_sets: 'SELECT',
  },
  worker: {
    key_sets: 'SELECT, INSERT, UPDATE',
    signing_keys: 'SELECT, INSERT, UPDATE',
    key_operations: 'SELECT, INSERT',
    // Append-only for the worker: only a migration rewrites audit events.
    audit_events: 'SELECT, INSERT',
    alert_incidents: 'SELECT, INSERT, UPDATE',
    key_set_incidents: 'SELECT, INSERT, UPDATE, DELETE',
    // Whether the schema is up to date, so that a worker that may not migrate knows it need not.
    schema_migrations: 'SELECT',
    published_keys: 'SELECT',
    published_key_sets: 'SELECT',
    // `keyturn signer client add|revoke` run as the CLI, with this role.
    signer_clients: 'SELECT, INSERT, UPDATE',
  },
  signer: {
    // What the key ring reads: versions, policies, the active key.
    published_key_sets: 'SELECT',
    signing_keys: 'SELECT',
    // The policy, and the audit chain's head of a key set a denial is recorded for (the row lock
    // appendAuditEvent takes needs UPDATE on a column): those two columns, never the policy.
    key_sets: 'SELECT, UPDATE (audit_head_seq, audit_head_hash)',
    // Denials are appended; of the trail it reads back only what the append returns.
    audit_events: 'SELECT (key_set_id, seq, hash), INSERT',
    // Who may sign: read only, so a compromised signer cannot make itself a client.
    signer_clients: 'SELECT',
    // Whether the schema is up to date, as for the worker.
    schema_migrations: 'SELECT',
  },
};

/** What a DBA must run because the migrating role may not; `keyturn migrate` then finishes the rest. */
function databaseRolesError(migratingRole: string, statements: string[]): KeyturnError {
  return new KeyturnError(
    'ERR_DATABASE_ROLES',
    `the schema is up to date, but ${migratingRole}, the role migrating it, may not set up the roles keyturn's processes log in as: ` +
      `have a DBA run ${statements.map((s) => `${s};`).join(' ')} (choosing the passwords), then run \`keyturn migrate\` again; ` +
      'or set KEYTURN_JWKS_ROLE, KEYTURN_WORKER_ROLE and KEYTURN_SIGNER_ROLE to roles that exist',
  );
}

/**
 * Sets up the roles on the schema just migrated, as its owner: creates a missing role (NOLOGIN: give
 * it LOGIN and a password, or grant it to a role that logs in), gives it CONNECT and USAGE on the
 * schema when PUBLIC does not, and grants ROLE_PRIVILEGES. What the owner may not do (create a role,
 * grant CONNECT on a database it does not own) throws ERR_DATABASE_ROLES listing the SQL for a DBA,
 * after everything else is done. Safe to run again. Returns the roles it created.
 */
export async function grantRoles(pool: Pool, roles: DatabaseRoles): Promise<string[]> {
  return withMigrationLock(pool, async (client) => {
    const forDba: string[] = [];
    const created: string[] = [];
    const { rows } = await client.query<{ me: string; database: string; schema: string }>(
      'SELECT current_user AS me, current_database() AS database, current_schema() AS schema',
    );
    const { me, database, schema } = rows[0];
    for (const purpose of Object.keys(ROLE_PRIVILEGES) as (keyof DatabaseRoles)[]) {
      const role = roles[purpose];
      const grantee = escapeIdentifier(role);
      if (!(await roleExists(client, role))) {
        const outcome = await attempt(client, `CREATE ROLE ${grantee} NOLOGIN`);
        if (outcome === 'refused') {
          forDba.push(`CREATE ROLE ${grantee} LOGIN PASSWORD '<password>'`);
          continue;
        }
        if (outcome === 'done') created.push(role);
      }
      const access = [
        {
          has: `has_database_privilege($1, current_database(), 'CONNECT')`,
          grant: `GRANT CONNECT ON DATABASE ${escapeIdentifier(database)} TO ${grantee}`,
        },
        {
          has: `has_schema_privilege($1, current_schema(), 'USAGE')`,
          grant: `GRANT USAGE ON SCHEMA ${escapeIdentifier(schema)} TO ${grantee}`,
        },
      ];
      for (const { has, grant } of access) {
        const { rows: held } = await client.query<{ ok: boolean }>(`SELECT ${has} AS ok`, [role]);
        if (!held[0].ok && (await attempt(client, grant)) === 'refused') forDba.push(grant);
      }
      const privileges = ROLE_PRIVILEGES[purpose];
      for (const [relation, granted] of Object.entries(privileges)) {
        await client.query(`GRANT ${granted} ON ${escapeIdentifier(relation)} TO ${grantee}`);
      }
      const inserted = Object.keys(privileges).filter((relation) => privileges[relation].includes('INSERT'));
      for (const sequence of await sequencesOf(client, inserted)) {
        await client.query(`GRANT USAGE ON SEQUENCE ${sequence} TO ${grantee}`);
      }
    }
    if (forDba.length > 0) throw databaseRolesError(me, forDba);
    await assertJwksRoleReadsViewsOnly(client, roles.jwks);
    return created;
  });
}

async function roleExists(client: PoolClient, role: string): Promise<boolean> {
  const { rowCount } = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  return rowCount === 1;
}

/** Runs one statement: `refused` when the role lacks the privilege, `exists` when another process created the role first. */
async function attempt(client: PoolClient, sql: string): Promise<'done' | 'refused' | 'exists'> {
  try {
    await client.query(sql);
    return 'done';
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === '42501') return 'refused';
    // duplicate_object, or the catalog's unique index when two CREATE ROLEs race.
    if (code === '42710' || code === '23505') return 'exists';
    throw error;
  }
}

/** The sequences owned by the columns of these tables (bigserial ids), quoted for SQL. */
async function sequencesOf(client: PoolClient, tables: string[]): Promise<string[]> {
  const { rows } = await client.query<{ sequence: string }>(
    `SELECT s.oid::regclass::text AS sequence
       FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
        AND d.refobjid = ANY($1::text[]::regclass[])
      ORDER BY 1`,
    [tables],
  );
  return rows.map((r) => r.sequence);
}

/**
 * The JWKS server's role must not read a private key in any other way either: as the owner, a
 * superuser, or a member of a role that can.
 */
async function assertJwksRoleReadsViewsOnly(client: PoolClient, role: string): Promise<void> {
  const { rows } = await client.query<{ readable: boolean }>(
    `SELECT has_table_privilege($1, 'signing_keys', 'SELECT') AS readable`,
    [role],
  );
  if (rows[0].readable) {
    throw new KeyturnError(
      'ERR_DATABASE_ROLES',
      `KEYTURN_JWKS_ROLE ${role} can read signing_keys (it owns it, is a superuser or a member of a role that can read it): ` +
        "the JWKS server's role must be one that reads the published keys only; choose another role or take those rights away",
      { field: 'KEYTURN_JWKS_ROLE' },
    );
  }
}
