import { roughDuration } from '../domain/describe';
import type { AlertNotification } from './notification';

/** A Slack message: `text` is what notifications and screen readers show, `blocks` what the channel shows. */
export interface SlackMessage {
  text: string;
  blocks: SlackBlock[];
}

type Text = { type: 'plain_text' | 'mrkdwn'; text: string; emoji?: boolean };
export type SlackBlock =
  | { type: 'header'; text: Text }
  | { type: 'section'; text?: Text; fields?: Text[] }
  | { type: 'context'; elements: Text[] }
  | { type: 'divider' };

// Slack refuses a whole message whose header exceeds 150 characters or a section 3000.
const HEADER_MAX = 150;
const SECTION_MAX = 3000;

/**
 * The Block Kit message for one notification: what failed (or recovered) first, then key set, kid,
 * step and failures side by side, the error, what to check, and the link to the workflow. A firing
 * incident reads 🚨, a resolved one ✅, so the two are told apart at a glance in a busy channel.
 */
export function slackMessage(n: AlertNotification): SlackMessage {
  const resolved = n.kind === 'resolved';
  const headline = resolved
    ? `✅ Resolved: key set ${n.keySetId}`
    : n.kind === 'reminder'
      ? `🚨 Still firing: key set ${n.keySetId} (reminder ${n.sequence - 1})`
      : `🚨 Alert: key set ${n.keySetId}`;
  const fields = [
    field('Key set', `\`${escape(n.keySetId)}\``),
    ...(n.kid ? [field('Kid', `\`${escape(n.kid)}\``)] : []),
    field('Step', escape(n.step)),
    ...(n.failures !== undefined && !resolved ? [field('Failures in a row', String(n.failures))] : []),
    field(
      resolved ? 'Was open for' : 'Open since',
      resolved ? roughDuration(n.at - n.openedAt) : slackDate(n.openedAt),
    ),
  ];
  const blocks: SlackBlock[] = [
    { type: 'header', text: { type: 'plain_text', text: truncate(headline, HEADER_MAX), emoji: true } },
    section(resolved ? `*Recovered:* ${escape(n.summary)}` : `*${escape(n.summary)}*`),
    { type: 'section', fields },
  ];
  if (!resolved) {
    if (n.error) blocks.push(section(`*Error*\n\`\`\`${escape(truncate(n.error, SECTION_MAX - 100))}\`\`\``));
    blocks.push(section(`*What to check*\n${escape(n.hint)}`));
  }
  if (n.workflowUrl)
    blocks.push(section(`<${n.workflowUrl}|Open the workflow ${escape(n.workflowId)} in the Temporal Web UI>`));
  blocks.push({
    type: 'context',
    elements: [
      {
        type: 'mrkdwn',
        text: `keyturn · incident \`${escape(n.incident)}\` · message ${n.sequence} · ${slackDate(n.at)}`,
      },
    ],
  });
  return { text: `${resolved ? '✅ Resolved' : '🚨'} keyturn, key set ${n.keySetId}: ${n.summary}`, blocks };
}

function section(text: string): SlackBlock {
  return { type: 'section', text: { type: 'mrkdwn', text: truncate(text, SECTION_MAX) } };
}

function field(label: string, value: string): Text {
  return { type: 'mrkdwn', text: `*${label}*\n${value}` };
}

/** A time Slack shows in each reader's own time zone, with UTC as the fallback. */
function slackDate(ms: number): string {
  return `<!date^${Math.floor(ms / 1000)}^{date_short_pretty} {time}|${new Date(ms).toISOString()}>`;
}

/** Slack reads `&`, `<` and `>` as markup; anything from an error message must not be. */
function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
