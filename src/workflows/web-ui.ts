import { setCurrentDetails, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { describeKeySet } from '../domain/describe';
import type { KeySetMachine } from './keyset-machine';
import { ActiveKidSearchAttribute, KeySetIdSearchAttribute, NextTransitionAtSearchAttribute } from './search-attributes';

/** What the Web UI was last shown, so that search attributes are upserted only when they change. */
export interface ShownState {
  activeKid?: string;
  nextTransitionAt?: number;
}

/**
 * Keeps what an operator sees in the Web UI in step with the state: the current details always;
 * the search attributes when the workflow was started with them (they must be registered first).
 */
export function showState(machine: KeySetMachine, shown: ShownState): void {
  const status = machine.status(Date.now());
  setCurrentDetails(describeKeySet(status));
  if (workflowInfo().typedSearchAttributes.get(KeySetIdSearchAttribute) === undefined) return;
  const activeKid = machine.key('active')?.kid;
  const nextTransitionAt = status.nextTransition?.at;
  if (activeKid === shown.activeKid && nextTransitionAt === shown.nextTransitionAt) return;
  upsertSearchAttributes([
    { key: ActiveKidSearchAttribute, value: activeKid ?? null },
    { key: NextTransitionAtSearchAttribute, value: nextTransitionAt === undefined ? null : new Date(nextTransitionAt) },
  ]);
  Object.assign(shown, { activeKid, nextTransitionAt });
}
