// Signs in to a chaintrace that runs with API keys, in Debian's Chromium:
// a page asked for without a session leads to the sign-in form and back,
// a wrong key is told apart, the top bar names the key, signing out ends
// the session. Waits on selectors and URLs, never on sleeps.
//
// Environment: CHAINTRACE_URL, CHAINTRACE_NODE_MODULES, CHAINTRACE_SHOTS,
// READ_KEY (a key with the read scope), TRACE_ID (a stored trace).

import path from 'node:path';
import { checker, env, open } from './harness.mjs';

const base = env('CHAINTRACE_URL');
const shots = env('CHAINTRACE_SHOTS');
const KEY = env('READ_KEY');
const TRACE = env('TRACE_ID');
const TIMEOUT = 20000;
// Before signing in and after signing out, the sign-in page asks who is
// signed in and is told "nobody" (401): an answer the test expects.
const expected = (r) => r.status() === 401 && new URL(r.url()).pathname === '/api/v1/whoami';
const { page, problems, close } = await open({ width: 1200, height: 800, expected });
const t = checker();
const check = t.check;

try {
  t.step = 'sent to sign in';
  await page.goto(`${base}/trace/${TRACE}`);
  await page.waitForSelector('#sign-in #key', { timeout: TIMEOUT });
  const url = new URL(page.url());
  check(url.pathname === '/login' && url.searchParams.get('next') === `/trace/${TRACE}`, `the trace page led to /login and will come back: ${page.url()}`);
  check(await page.locator('#next').inputValue() === `/trace/${TRACE}`, 'the form carries where to go back to');
  check(await page.locator('#key').getAttribute('type') === 'password', 'the key is typed into a password field');
  await page.screenshot({ path: path.join(shots, 'login.png') });

  t.step = 'wrong key';
  await page.fill('#key', 'ctk_0000');
  await Promise.all([page.waitForURL(/failed=key/, { timeout: TIMEOUT }), page.click('#sign-in-button')]);
  await page.waitForSelector('#message:not([hidden])', { timeout: TIMEOUT });
  const said = await page.locator('#message').textContent();
  check(said.includes('not known'), `a wrong key is told: ${said}`);
  check(await page.locator('#next').inputValue() === `/trace/${TRACE}`, 'a failed sign-in keeps where to go back to');
  await page.screenshot({ path: path.join(shots, 'login-failed.png') });

  t.step = 'signed in';
  await page.fill('#key', KEY);
  await Promise.all([page.waitForURL(`**/trace/${TRACE}`, { timeout: TIMEOUT }), page.click('#sign-in-button')]);
  await page.waitForSelector('.row[data-name="process_query"]', { timeout: TIMEOUT });
  check(true, 'the trace page drew the trace after signing in');
  await page.waitForSelector('.topbar-user', { timeout: TIMEOUT });
  const user = await page.locator('.topbar-user').textContent();
  check(user === 'grafana · sign out', `the top bar names the key: ${user}`);
  const cookie = (await page.context().cookies()).find((c) => c.name === 'chaintrace_session');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', `the session cookie is HttpOnly and SameSite=Strict: ${JSON.stringify(cookie && { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite })}`);
  const readable = await page.evaluate(() => document.cookie);
  check(!readable.includes('chaintrace_session'), 'scripts cannot read the session cookie');
  await page.screenshot({ path: path.join(shots, 'login-signed-in-trace.png') });

  t.step = 'sign out';
  await Promise.all([page.waitForURL('**/login', { timeout: TIMEOUT }), page.click('.topbar-user')]);
  await page.waitForSelector('#signed-in:not([hidden])', { timeout: TIMEOUT });
  const who = await page.locator('#who-key').textContent();
  check(who === 'grafana', `the sign-in page says who is signed in: ${who}`);
  await page.screenshot({ path: path.join(shots, 'login-signed-in.png') });
  await Promise.all([page.waitForURL(/signed_out=1/, { timeout: TIMEOUT }), page.click('#sign-out-button')]);
  await page.waitForSelector('#message:not([hidden])', { timeout: TIMEOUT });
  check(await page.locator('#signed-in').isHidden(), 'no one is signed in any more');
  await page.goto(`${base}/trace/${TRACE}`);
  await page.waitForSelector('#sign-in #key', { timeout: TIMEOUT });
  check(new URL(page.url()).pathname === '/login', `after signing out the trace page asks to sign in again: ${page.url()}`);

  t.step = 'console';
  check(problems.length === 0, `no dialogs, page errors or failed requests: ${problems.join(' | ')}`);
} catch (e) {
  t.failures++;
  console.log(`FAIL [${t.step}] ${e.stack || e}`);
  try {
    await page.screenshot({ path: path.join(shots, 'login-failure.png') });
  } catch {
    /* the page is gone */
  }
} finally {
  await close();
}
console.log(t.failures ? `${t.failures} check(s) failed` : 'all checks passed');
process.exit(t.failures ? 1 : 0);
