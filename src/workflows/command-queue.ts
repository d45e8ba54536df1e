import { ApplicationFailure, condition, log, uuid4 } from '@temporalio/workflow';
import { KeyturnError } from '../domain/errors';
import type { KeySetCommand } from '../domain/key-set-state';
import type { KeySetMachine } from './key-set-machine';
import type { Outcome } from './step-failures';

/** A command as a message handler makes it; the queue gives it its id and says whether someone waits. */
export type NewCommand = KeySetCommand extends infer C
  ? C extends KeySetCommand
    ? Omit<C, 'id' | 'awaited'>
    : never
  : never;

/**
 * Operator messages become commands that the main loop performs one at a time, in order. An Update
 * waits here for its command's outcome; a signal's command is performed without anyone waiting.
 * Outcomes are handed over before the next continue-as-new, which waits for every handler to finish.
 */
export class CommandQueue {
  readonly #outcomes = new Map<string, Outcome>();

  constructor(private readonly machine: KeySetMachine) {}

  /** An Update's command: queued, and its result (or failure) once the main loop has performed it. */
  async submit<T>(command: NewCommand): Promise<T> {
    const id = uuid4();
    this.machine.enqueue({ ...command, id, awaited: true } as KeySetCommand);
    await condition(() => this.#outcomes.has(id));
    const outcome = this.#outcomes.get(id)!;
    this.#outcomes.delete(id);
    if (!outcome.ok) throw outcome.failure;
    return outcome.value as T;
  }

  /** A signal's command: queued; a failed attempt stays queued and is tried again after the backoff. */
  post(command: NewCommand): void {
    this.machine.enqueue({ ...command, id: uuid4(), awaited: false } as KeySetCommand);
  }

  /** Ends `command` with `outcome`: the Update waiting for it answers; a refused signal is logged. */
  settle(command: KeySetCommand, outcome: Outcome): void {
    this.machine.complete(command.id);
    if (command.awaited) this.#outcomes.set(command.id, outcome);
    else if (!outcome.ok)
      log.warn('operator command refused', {
        keySetId: this.machine.keySetId,
        command: command.type,
        error: outcome.failure.message,
      });
  }
}

/** Runs a synchronous check; a KeyturnError it throws becomes the ApplicationFailure an Update caller receives. */
export function checked<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw error instanceof KeyturnError ? toApplicationFailure(error) : error;
  }
}

export function toApplicationFailure(error: KeyturnError): ApplicationFailure {
  return ApplicationFailure.create({
    type: error.code,
    message: error.message,
    nonRetryable: true,
    details: [{ keySetId: error.keySetId, kid: error.kid, field: error.field }],
  });
}
