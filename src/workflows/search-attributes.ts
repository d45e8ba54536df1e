import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * Custom search attributes of key set workflows, so the Web UI and `temporal workflow list` can
 * filter them ("which key sets rotate in the next 24 hours?"). They must be registered in the
 * namespace (`keyturn dev` does; see the README for a server of your own).
 */
export const KeySetIdSearchAttribute = defineSearchAttributeKey('KeySetId', SearchAttributeType.KEYWORD);
export const ActiveKidSearchAttribute = defineSearchAttributeKey('ActiveKid', SearchAttributeType.KEYWORD);
export const NextTransitionAtSearchAttribute = defineSearchAttributeKey(
  'NextTransitionAt',
  SearchAttributeType.DATETIME,
);
