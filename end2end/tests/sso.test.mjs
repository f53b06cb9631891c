// Single sign-on in a real Chromium through a real OpenID provider: panva's `oidc-provider`
// (end2end/oidc/provider.mjs) on loopback, with its own login and consent pages. A producer of
// the studio signs in with the sign-in page's button, is made on the way in with the role her
// group gives, and lands in the console, hydrated.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { artifacts, freePort, launchBrowser, root, startServer } from './harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** Starts the provider for a console on `port`; resolves with its issuer and a stop. */
function startProvider(port) {
  const child = spawn('node', [join(root, 'end2end', 'oidc', 'provider.mjs')], {
    env: { PATH: process.env.PATH, OIDC_REDIRECT_URI: `http://127.0.0.1:${port}/auth/oidc/callback`, OIDC_CLIENT_ID: 'control-room', OIDC_CLIENT_SECRET: 'e2e-client-secret' },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('the OpenID provider did not start within 20 s')), 20_000);
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      ok({ issuer: JSON.parse(line).issuer, stop: () => child.kill('SIGTERM') });
    });
    child.once('exit', (code) => fail(new Error(`the OpenID provider exited (${code})`)));
  });
}

test('a producer signs in through the identity provider\'s login and consent pages', async () => {
  const port = await freePort();
  const provider = await startProvider(port);
  const server = await startServer({
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    OIDC_ISSUER: provider.issuer,
    OIDC_CLIENT_ID: 'control-room',
    OIDC_CLIENT_SECRET: 'e2e-client-secret',
    OIDC_PROVIDER_NAME: 'Studio ID',
    OIDC_ALLOWED_DOMAINS: 'studio.test',
    OIDC_ADMIN_GROUPS: 'cr-admins',
    OIDC_PRODUCER_GROUPS: 'cr-producers',
  }, ['--simulate'], port);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    const page = await context.newPage();
    await page.goto(server.base + '/');
    await page.waitForURL((u) => u.pathname === '/signin');
    assert.match(await page.textContent('[data-testid="signin-sso"]'), /Sign in with Studio ID/);
    await page.click('[data-testid="signin-sso"]');
    // The provider's own login page, then its consent page.
    await page.waitForSelector('input[name="login"]', { timeout: 10_000 });
    assert.ok(page.url().startsWith(provider.issuer), `on the provider: ${page.url()}`);
    await page.fill('input[name="login"]', 'pat@studio.test');
    await page.fill('input[name="password"]', 'anything');
    await page.click('button[type="submit"]');
    await page.waitForSelector('input[name="prompt"][value="consent"]', { state: 'attached', timeout: 10_000 });
    await page.screenshot({ path: join(artifacts, 'sso-consent.png') });
    await page.click('button[type="submit"]');
    // Back in the console, signed in as the producer her group makes her.
    await page.waitForURL((u) => u.origin === server.base && u.pathname === '/', { timeout: 10_000 });
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    assert.equal(await page.getAttribute('[data-testid="user-bar"]', 'data-role'), 'producer');
    assert.match(await page.textContent('[data-testid="user-bar"]'), /Pat Producer|pat@studio\.test/);
    await page.screenshot({ path: join(artifacts, 'sso-signed-in.png') });
  } finally {
    await context.close();
    await server.stop();
    provider.stop();
  }
});
