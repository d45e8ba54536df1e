import { patched, setCurrentDetails, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { describeKeySet } from '../domain/describe';
import type { KeySetMachine } from './key-set-machine';
import {
  ActiveKidSearchAttribute,
  KeySetIdSearchAttribute,
  NextTransitionAtSearchAttribute,
} from './search-attributes';

/**
 * Patch: NextTransitionAt shows when the key set next rotates (KeySetMachine.nextRotationAt), no
 * longer every transition's time, and the search attributes are compared with what the run holds
 * (carried over by continue-as-new): a rotation period costs one upsert, not one per transition.
 */
const SEARCH_ATTRIBUTES_FOLLOW_ROTATIONS = 'search-attributes-follow-rotations';

/** What the Web UI was last shown, so that search attributes are upserted only when they change. */
export interface ShownState {
  activeKid?: string;
  nextTransitionAt?: number;
}

/**
 * Keeps what an operator sees in the Web UI in step with the state: the current details (in words,
 * the next transition whatever it is) always; the search attributes, when the workflow was started
 * with them (they must be registered first), when the active kid or the next rotation moves.
 */
export function showState(machine: KeySetMachine, shown: ShownState): void {
  const now = Date.now();
  const status = machine.status(now);
  setCurrentDetails(describeKeySet(status));
  const attributes = workflowInfo().typedSearchAttributes;
  if (attributes.get(KeySetIdSearchAttribute) === undefined) return;
  const activeKid = machine.key('active')?.kid;
  const followRotations = patched(SEARCH_ATTRIBUTES_FOLLOW_ROTATIONS);
  const nextTransitionAt = followRotations ? machine.nextRotationAt(now) : status.nextTransition?.at;
  if (followRotations)
    Object.assign(shown, {
      activeKid: attributes.get(ActiveKidSearchAttribute),
      nextTransitionAt: attributes.get(NextTransitionAtSearchAttribute)?.getTime(),
    });
  if (activeKid === shown.activeKid && nextTransitionAt === shown.nextTransitionAt) return;
  upsertSearchAttributes([
    { key: ActiveKidSearchAttribute, value: activeKid ?? null },
    { key: NextTransitionAtSearchAttribute, value: nextTransitionAt === undefined ? null : new Date(nextTransitionAt) },
  ]);
  Object.assign(shown, { activeKid, nextTransitionAt });
}
