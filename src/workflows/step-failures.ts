import { ActivityFailure, ApplicationFailure, isCancellation, log } from '@temporalio/workflow';
import { STEP_FAILURE_INCIDENT } from '../domain/incidents';
import { raiseAlert } from './alerts';
import type { KeySetMachine } from './key-set-machine';

/** How a step ended: its value, or the failure an Update caller receives. */
export type Outcome<T = unknown> = { ok: true; value: T } | { ok: false; failure: ApplicationFailure };

/**
 * Runs one step (about `kid`, when it concerns one key). When its activities give up, the failure is
 * recorded, alerted and backed off instead of failing the workflow: rotation resumes once PostgreSQL
 * (or whatever failed) is back. A run of failures is one incident, resolved by the first success.
 */
export async function attempt<T>(
  machine: KeySetMachine,
  step: string,
  work: () => Promise<T>,
  kid?: string,
): Promise<Outcome<T>> {
  machine.inFlight = step;
  const about = kid === undefined ? {} : { kid };
  try {
    const value = await work();
    if (step === 'load' && failedWorkComesNext(machine)) return { ok: true, value };
    const recovered = machine.succeeded();
    if (recovered) {
      await raiseAlert(machine, {
        incident: STEP_FAILURE_INCIDENT,
        status: 'resolved',
        step: recovered.step,
        ...about,
        summary: `key set "${machine.keySetId}" recovered: ${step} succeeded`,
      });
    }
    return { ok: true, value };
  } catch (error) {
    if (!(error instanceof ActivityFailure) || isCancellation(error)) throw error;
    const cause = error.cause instanceof ApplicationFailure ? error.cause : undefined;
    const message = error.cause?.message ?? error.message;
    const lastError = machine.failed(step, message, Date.now());
    log.warn('key set step failed', { keySetId: machine.keySetId, step, failures: lastError.failures, error: message });
    await raiseAlert(machine, {
      incident: STEP_FAILURE_INCIDENT,
      status: 'firing',
      step,
      ...about,
      summary: `key set "${machine.keySetId}": ${step} failed ${lastError.failures} time(s) in a row; retrying after a backoff`,
      error: message,
      // keyturn's own error codes pick the message's hint; other failure types name only a JavaScript class.
      ...(cause?.type?.startsWith('ERR_') ? { code: cause.type } : {}),
      failures: lastError.failures,
    });
    return {
      ok: false,
      failure: ApplicationFailure.create({
        type: cause?.type ?? 'ERR_STEP_FAILED',
        message: `${step} of key set "${machine.keySetId}" failed: ${message}`,
        nonRetryable: true,
      }),
    };
  } finally {
    machine.inFlight = null;
  }
}

/**
 * After a failure the keys are read again before anything else: that read succeeding is no recovery
 * while work is due right after it, so the run of failures (and its incident) goes on until that work
 * succeeds, or nothing is due. Otherwise a step failing behind a working read (a missing KEK) would
 * never back off beyond a minute, and would alert and resolve every time.
 */
function failedWorkComesNext(machine: KeySetMachine): boolean {
  return machine.state.lastError !== null && machine.nextStep(Date.now()).type !== 'wait';
}
