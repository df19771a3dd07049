// What the browser tests share: Debian's Chromium started headless on a
// fresh profile through playwright-core, checks that count failures, and
// a page that records dialogs, page errors, failed requests and console
// errors (anything the test does not expect is a problem).

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** The environment variable `k`; throws when it is not set. */
export function env(k) {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
}

/**
 * Starts Chromium and opens one page. `expected(response)` says which
 * failed responses are answers the test asks for on purpose.
 */
export async function open({ width, height, expected = () => false }) {
  const require = createRequire(path.join(env('CHAINTRACE_NODE_MODULES'), 'x.js'));
  const { chromium } = require('playwright-core');
  const profile = mkdtempSync(path.join(tmpdir(), 'chaintrace-chromium-'));
  // A fresh, empty profile (--user-data-dir, which Playwright passes itself).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width, height },
  });
  const page = await context.newPage();
  const problems = [];
  const fetched = [];
  page.on('dialog', async (d) => {
    problems.push(`a dialog opened: ${d.message()}`);
    await d.dismiss();
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('response', (r) => {
    fetched.push(r.url());
    if (r.status() >= 400 && !expected(r)) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console error: ${m.text()}`);
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, problems, fetched, close };
}

/** Checks that print `ok`/`FAIL` lines under the current step and count failures. */
export function checker() {
  const state = { failures: 0, step: '' };
  state.check = (cond, what) => {
    console.log(`${cond ? 'ok  ' : 'FAIL'} [${state.step}] ${what}`);
    if (!cond) state.failures++;
  };
  return state;
}
