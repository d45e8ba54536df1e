import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { DevStack } from '../../src/dev/dev-stack';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { startTestDevStack, type TestDevStack } from '../helpers/dev-stack';

// The Temporal Web UI as an operator sees it, in headless Chromium (Debian's package; .ci/run
// installs it): a key set's workflow found by its search attributes, its details in words.

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(__dirname, '..', '..', 'test-artifacts');
const KEY_SET = 'webui';

let running: TestDevStack;
let stack: DevStack;
let browser: Browser;
let page: Page;
let activeKid: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)`);
  running = await startTestDevStack('webui');
  stack = running.stack;
  await stack.keySets.start(KEY_SET, DEFAULT_POLICY);
  activeKid = await stack.keySets.waitForActiveKid(KEY_SET);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await mkdir(ARTIFACTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await running?.stop();
});

/** Runs a browser test; when it fails, what the page showed is saved beside the other screenshots. */
function inBrowser(body: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await body();
    } catch (error) {
      await page.screenshot({ path: path.join(ARTIFACTS, 'web-ui-failure.png'), fullPage: true });
      throw error;
    }
  };
}

test(
  'the workflow list finds the key set by its KeySetId search attribute',
  inBrowser(async () => {
    const query = encodeURIComponent(`KeySetId="${KEY_SET}"`);
    await page.goto(`${stack.webUiUrl}/namespaces/default/workflows?query=${query}`);
    await page.getByText(`keyset/${KEY_SET}`, { exact: true }).first().waitFor({ timeout: 30_000 });
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-ui-workflow-list.png') });
  }),
);

test(
  "the workflow page shows the key set's summary, current details and search attributes",
  inBrowser(async () => {
    await page.goto(`${stack.webUiUrl}/namespaces/default/workflows/${encodeURIComponent(`keyset/${KEY_SET}`)}`);
    // Activities and timers carry summaries, so the events read like the lifecycle (a new key set's
    // first key is made in the activity that loads it). Read on the page's first view: UI 2.54 (CLI
    // 1.9.1) no longer shows the events under "User Metadata", as 2.42 (CLI 1.5.1) did.
    await page.getByText('load the keys from PostgreSQL, and make the first key').first().waitFor({ timeout: 30_000 });
    expect(await page.innerText('body')).toMatch(/sleep until \d{4}-\d\d-\d\d/);
    await page.getByText('User Metadata', { exact: true }).click({ timeout: 30_000 });
    // Current details come from the running worker (a built-in query); the UI renders them, like the
    // summary, as Markdown in a sandboxed frame of their own.
    const details = page.frameLocator('iframe[src*="Active"]');
    await details.getByText(`Active key: ${activeKid} (ES256)`).waitFor({ timeout: 30_000 });
    const detailsText = await details.locator('body').innerText();
    expect(detailsText).toContain('Next transition: generate and publish the next key at');
    expect(detailsText).toContain('Paused: no');
    expect(detailsText).toContain('Last error: none');
    const summary = page.frameLocator('iframe[src*="JWT%20key%20set"]');
    await summary.getByText(`JWT key set ${KEY_SET} — ES256, rotates every 30d`).waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-ui-user-metadata.png'), fullPage: true });

    await page.getByText('Search Attributes', { exact: true }).click();
    await page.getByText(`"ActiveKid": "${activeKid}"`).waitFor({ timeout: 30_000 });
    const attributes = await page.innerText('body');
    expect(attributes).toContain(`"KeySetId": "${KEY_SET}"`);
    expect(attributes).toMatch(/"NextTransitionAt": "\d{4}-\d\d-\d\dT/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-ui-search-attributes.png'), fullPage: true });
  }),
);
