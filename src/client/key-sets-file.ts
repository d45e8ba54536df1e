import { open } from 'node:fs/promises';
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { DURATION_HINT, durationToMs, formatDuration } from '../domain/duration';
import { KeyturnError, PolicyError } from '../domain/errors';
import { keySetIdProblem } from '../domain/key-set-id';
import { validatePolicy, type KeySetPolicy } from '../domain/policy';

/**
 * `keysets.yaml`: the key sets a deployment wants and how often the supervisor checks on them.
 * Read whole and checked whole: every problem is reported at once, with its line, and nothing is
 * applied from a file that has any.
 */

export const DEFAULT_SUPERVISOR_INTERVAL = '5m';
const MIN_SUPERVISOR_INTERVAL_MS = 60_000;
/** Thousands of key sets fit in far less; a larger file is the wrong one, and would take seconds to parse. */
const MAX_FILE_BYTES = 1024 * 1024;
const TOP_LEVEL_KEYS = ['supervisor', 'keySets'];
const SUPERVISOR_KEYS = ['interval'];

export interface KeySetDefinition {
  id: string;
  /** Validated and normalised; fields the file leaves out have the seed policy's values. */
  policy: KeySetPolicy;
}

export interface KeySetsFile {
  /** Where it was read from, as given (for messages). */
  source: string;
  supervisor: { interval: string; intervalMs: number };
  keySets: KeySetDefinition[];
}

/** One thing wrong with the file. */
export interface KeySetsFileProblem {
  /** 1-based; absent when the file has no place for it. */
  line?: number;
  /** The key set concerned, when there is one. */
  keySetId?: string;
  /** A policy field of `keySetId`, or a path in the file such as `supervisor.interval` or `keySets[2].id`. */
  field: string;
  message: string;
}

/** A key sets file with one or more problems; `problems` lists all of them, in file order. */
export class KeySetsFileError extends KeyturnError {
  readonly problems: KeySetsFileProblem[];

  constructor(source: string, problems: KeySetsFileProblem[]) {
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    super(
      'ERR_KEYSETS_FILE_INVALID',
      `${source} has ${count}, nothing was applied: ${problems.map(describeProblem).join('; ')}`,
      {
        keySetId: problems[0]?.keySetId,
        field: problems[0]?.field,
      },
    );
    this.problems = problems;
  }
}

/** `line 7: key set "web" gracePeriod: 1m is shorter than ...` */
function describeProblem(problem: KeySetsFileProblem): string {
  const where = problem.line === undefined ? '' : `line ${problem.line}: `;
  const keySet = problem.keySetId === undefined ? '' : `key set "${problem.keySetId}" `;
  return `${where}${keySet}${problem.field}: ${problem.message}`;
}

/** Reads and checks a key sets file; throws a KeySetsFileError listing every problem. */
export async function loadKeySetsFile(file: string): Promise<KeySetsFile> {
  let text: string;
  try {
    // One byte past the limit is enough for parseKeySetsFile to refuse the file; /dev/zero ends here too.
    text = await readAtMost(file, MAX_FILE_BYTES + 1);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (error as Error).message;
    throw new KeyturnError(
      'ERR_KEYSETS_FILE_INVALID',
      `cannot read the key sets file ${file} (${path.resolve(file)}): ${reason}; name one with -f <file>`,
      {
        field: 'file',
        cause: error,
      },
    );
  }
  return parseKeySetsFile(text, file);
}

async function readAtMost(file: string, bytes: number): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    let length = 0;
    while (length < bytes) {
      const { bytesRead } = await handle.read(buffer, length, bytes - length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buffer.toString('utf8', 0, length);
  } finally {
    await handle.close();
  }
}

/** Checks the text of a key sets file; throws a KeySetsFileError listing every problem. */
export function parseKeySetsFile(text: string, source = 'keysets.yaml'): KeySetsFile {
  if (Buffer.byteLength(text) > MAX_FILE_BYTES) {
    throw new KeySetsFileError(source, [
      {
        field: 'file',
        message: 'is larger than 1 MiB, more than any list of key sets needs: check that it is the key sets file',
      },
    ]);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // The structure is unreliable past a syntax error: report those alone. Nesting that exhausts the
    // parser's stack is reported once, not once for every level the parser gave up at.
    const exhausted = doc.errors.find((error) => error.code === 'RESOURCE_EXHAUSTION');
    throw new KeySetsFileError(
      source,
      (exhausted ? [exhausted] : doc.errors).map((error) => ({
        line: error.linePos?.[0].line,
        field: 'YAML',
        message:
          error === exhausted
            ? 'nested too deeply to read, far deeper than a key sets file ever is'
            : error.message.replace(/\s+at line \d+, column \d+:[\s\S]*$/, ''),
      })),
    );
  }
  const lineOf = locator(doc, lineCounter);
  const problems: KeySetsFileProblem[] = [];
  const problem: Report = (at, p) => {
    const line = lineOf(at);
    problems.push(line === undefined ? p : { line, ...p });
  };

  let top: unknown;
  try {
    top = doc.toJS();
  } catch (error) {
    // The yaml package counts alias expansions only while it builds the values (maxAliasCount).
    if (!(error instanceof ReferenceError) || !/alias/i.test(error.message)) throw error;
    throw new KeySetsFileError(source, [
      {
        field: 'YAML',
        message: 'its aliases expand too far (a YAML alias bomb?): write the values out instead of repeating *aliases',
      },
    ]);
  }
  if (!isRecord(top)) {
    problem([], {
      field: 'keySets',
      message:
        top == null
          ? 'the file is empty; list the key sets under keySets'
          : 'the file must be a mapping with keySets (and optionally supervisor)',
    });
    throw new KeySetsFileError(source, problems);
  }
  for (const key of Object.keys(top).filter((k) => !TOP_LEVEL_KEYS.includes(k))) {
    problem([key], { field: key, message: `unknown top-level key; the file has ${TOP_LEVEL_KEYS.join(' and ')}` });
  }

  const supervisor = checkSupervisor(top.supervisor, problem);
  const keySets: KeySetDefinition[] = [];
  if (top.keySets == null) {
    problem([], { field: 'keySets', message: 'missing: list the key sets under keySets' });
  } else if (!Array.isArray(top.keySets)) {
    problem(['keySets'], { field: 'keySets', message: 'must be a list of key sets (`- id: ...`)' });
  } else if (top.keySets.length === 0) {
    problem(['keySets'], { field: 'keySets', message: 'lists no key set' });
  } else {
    const firstLine = new Map<string, number | undefined>();
    top.keySets.forEach((entry: unknown, i) => {
      const at = ['keySets', i];
      if (!isRecord(entry)) {
        problem(at, { field: `keySets[${i}]`, message: 'must be a mapping of id and policy fields' });
        return;
      }
      const { id, ...fields } = entry;
      const idProblem = keySetIdProblem(id);
      // Problems of a key set with an invalid id are reported by its position: the id would only mislead.
      const keySetId = idProblem === undefined ? (id as string) : undefined;
      if (id == null) {
        problem(at, { field: `keySets[${i}].id`, message: 'missing: every key set needs an id' });
      } else if (typeof id !== 'string') {
        problem([...at, 'id'], { field: `keySets[${i}].id`, message: `${JSON.stringify(id)} must be text (quote it)` });
      } else if (idProblem !== undefined) {
        problem([...at, 'id'], { field: `keySets[${i}].id`, message: idProblem });
      } else if (firstLine.has(id)) {
        const first = firstLine.get(id);
        problem([...at, 'id'], {
          keySetId,
          field: 'id',
          message: `appears more than once${first === undefined ? '' : ` (first at line ${first})`}`,
        });
      } else {
        firstLine.set(id, lineOf([...at, 'id']));
      }
      try {
        const policy = validatePolicy(fields, { keySetId });
        if (keySetId !== undefined) keySets.push({ id: keySetId, policy });
      } catch (error) {
        if (!(error instanceof PolicyError)) throw error;
        for (const violation of error.violations) {
          const [, name, index] = /^([^[]+)(?:\[(\d+)\])?$/.exec(violation.field) ?? [];
          const field = keySetId === undefined ? `keySets[${i}].${violation.field}` : violation.field;
          problem([...at, name ?? violation.field, ...(index === undefined ? [] : [Number(index)])], {
            keySetId,
            field,
            message: violation.message,
          });
        }
      }
    });
  }

  if (problems.length > 0) {
    problems.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
    throw new KeySetsFileError(source, problems);
  }
  return { source, supervisor, keySets };
}

type Report = (at: (string | number)[], problem: Omit<KeySetsFileProblem, 'line'>) => void;

function checkSupervisor(value: unknown, problem: Report): KeySetsFile['supervisor'] {
  const fallback = { interval: DEFAULT_SUPERVISOR_INTERVAL, intervalMs: durationToMs(DEFAULT_SUPERVISOR_INTERVAL)! };
  if (value == null) return fallback;
  if (!isRecord(value)) {
    problem(['supervisor'], { field: 'supervisor', message: 'must be a mapping, e.g. `interval: 5m`' });
    return fallback;
  }
  for (const key of Object.keys(value).filter((k) => !SUPERVISOR_KEYS.includes(k))) {
    problem(['supervisor', key], {
      field: `supervisor.${key}`,
      message: `unknown field; supervisor has ${SUPERVISOR_KEYS.join(', ')}`,
    });
  }
  if (value.interval == null) return fallback;
  const ms = durationToMs(value.interval);
  if (ms === undefined) {
    problem(['supervisor', 'interval'], {
      field: 'supervisor.interval',
      message: `${JSON.stringify(value.interval)} is not a duration; ${DURATION_HINT}`,
    });
  } else if (ms < MIN_SUPERVISOR_INTERVAL_MS) {
    problem(['supervisor', 'interval'], {
      field: 'supervisor.interval',
      message: `${String(value.interval)} is shorter than the minimum, 1m`,
    });
  } else {
    return { interval: formatDuration(ms), intervalMs: ms };
  }
  return fallback;
}

/** The line of the deepest node on `at` that exists: a map entry's key line, a list item's first line. */
function locator(doc: Document, lineCounter: LineCounter): (at: (string | number)[]) => number | undefined {
  const lineAt = (offset: number | undefined) => (offset === undefined ? undefined : lineCounter.linePos(offset).line);
  return (at) => {
    let node: unknown = doc.contents;
    let line = lineAt(isMap(node) || isSeq(node) ? node.range?.[0] : undefined);
    for (const step of at) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === step);
        if (!pair) break;
        line = lineAt(isScalar(pair.key) ? pair.key.range?.[0] : undefined) ?? line;
        node = pair.value;
      } else if (isSeq(node) && typeof step === 'number' && node.items[step] !== undefined) {
        node = node.items[step];
        line = lineAt((node as { range?: [number, number, number] }).range?.[0]) ?? line;
      } else {
        break;
      }
    }
    return line;
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
