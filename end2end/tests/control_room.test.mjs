// The Control Room and its settings in a real Chromium: they load, hydrate, show every panel
// and honest empty states, and keep the key off the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { artifacts, launchBrowser, openHydrated, root, startServer } from './harness.mjs';

// The daily page's numbered panels, then the admins' two (Team, Audit); and the settings'.
const PANELS = ['01', '03', '04', '05', '06', '07', '09', '10', '11', '12', '13'];
const TITLES = ['Connection Status', 'Model Market', 'Favorite Models', 'Spend Against Caps', 'Rate Guard',
  'Library', 'Ledger', 'Task Monitor', 'Error Review', 'People and Roles', 'Audit Log'];
const SETTINGS = [['secret', 'API Key Vault'], ['rules', 'Cost Rules'], ['delivery', 'Callback / Webhook Manager'], ['two-step', 'Two-Step Sign-In']];

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('without a key the pages hydrate, show every panel in its section (settings apart) and say Not configured', async () => {
  const server = await startServer();
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    // In four sections (operate · money · library · team), each panel keeps its number.
    const shown = await page.$$eval('section.panel', (els) => els.map((e) => [e.dataset.panel, e.querySelector('h2').textContent.trim()]));
    assert.deepEqual(shown.map(([n]) => n).sort(), PANELS);
    assert.deepEqual(shown.sort((a, b) => a[0].localeCompare(b[0])).map(([, t]) => t), TITLES);
    assert.deepEqual(await page.$$eval('main > section.section', (els) => els.map((e) => e.id)), ['operate', 'money', 'library', 'team']);
    assert.equal(await page.textContent('[data-testid="connection-title"]'), 'Not configured');
    assert.match(await page.textContent('header.masthead'), /BROAD\|CAST/);
    assert.match(await page.textContent('[data-panel="01"]'), /0 while disconnected/);
    assert.match(await page.textContent('[data-panel="10"]'), /No tasks on record yet/);
    // The stylesheet applied: the page follows the system's setting, light in this context
    // (Playwright's default; the dark theme is checked in layout.test.mjs).
    const bg = await page.$eval('body', (b) => getComputedStyle(b).backgroundColor);
    assert.equal(bg, 'rgb(243, 245, 248)');
    assert.deepEqual(errors, [], 'no console errors (hydration mismatches would show here)');
    await page.screenshot({ path: join(artifacts, 'control-room-1280.png'), fullPage: true });
    // What is set once is on its own page, one link away.
    await Promise.all([page.waitForURL((u) => u.pathname === '/settings'), page.click('[data-testid="settings-link"]')]);
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    assert.deepEqual(await page.$$eval('section.panel', (els) => els.map((e) => [e.id, e.querySelector('h2').textContent.trim()])), SETTINGS);
    assert.match(await page.textContent('[data-panel="02"]'), /Not configured/);
    assert.deepEqual(errors, [], 'no console errors on the settings either');
    await context.close();
  } finally {
    await server.stop();
  }
});

test('on a phone the panels stack without sideways scrolling', async () => {
  const server = await startServer();
  try {
    const { context, page } = await openHydrated(browser, server.base + '/', { width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than a 390px screen`);
    await page.screenshot({ path: join(artifacts, 'control-room-390.png'), fullPage: true });
    await context.close();
  } finally {
    await server.stop();
  }
});

// The key the release build was made with in its environment (scripts/test.sh sets it), so
// that a key compiled into the bundle would be found here.
const key = process.env.LEAK_CANARY ?? 'kie-LEAKCANARY-5e1f0c9a7b3d2e4f6a8b';
const forms = [key, Buffer.from(key).toString('base64').replace(/=+$/, ''), Buffer.from(key).toString('base64url'),
  encodeURIComponent(key), Buffer.from(key).toString('hex'), 'LEAKCANARY-5e1f0c9a'];
const leaks = (text) => forms.filter((f) => text.includes(f));

test('with a key the vault shows a fingerprint, and the key is on no page, bundle or log', async () => {
  const server = await startServer({ KIE_API_KEY: key });
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/settings');
    assert.match(await page.textContent('[data-panel="02"]'), /Configured/);
    assert.match(await page.textContent('[data-panel="02"]'), /Fingerprint\s*[0-9a-f]{8}/);
    assert.match(await page.textContent('[data-testid="vault-verified"]'), /failed at \d\d:\d\d:\d\d \(UTC\)/, 'the last verification is the probe\'s own');
    assert.deepEqual(leaks(await page.content()), [], 'key in the hydrated settings');
    await page.goto(server.base + '/');
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    // No upstream answers on loopback port 9: the panel says so instead of showing numbers.
    assert.match(await page.textContent('[data-testid="connection-detail"]'), /Cannot reach 127\.0\.0\.1/);
    assert.equal(await page.$('[data-testid="credit-balance"]'), null);
    assert.deepEqual(leaks(await page.content()), [], 'key in the hydrated page');
    const assets = await page.$$eval('link[href^="/pkg/"]', (ls) => [...new Set(ls.map((l) => l.getAttribute('href')))]);
    assert.equal(assets.length, 3, `the page names its script, WASM and stylesheet: ${assets}`);
    for (const asset of assets) {
      const body = Buffer.from(await (await fetch(server.base + asset)).arrayBuffer());
      assert.ok(body.length > 0, `${asset} served`);
    }
    // Every file of the bundle as built, in every form of the key.
    const pkg = join(root, 'target', 'site', 'pkg');
    const files = readdirSync(pkg);
    assert.ok(files.some((f) => f.endsWith('.wasm')), 'the bundle is there');
    for (const f of files) {
      assert.deepEqual(leaks(readFileSync(join(pkg, f)).toString('latin1')), [], `key in ${f}`);
    }
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
  assert.ok(server.logs.join('').length > 0, 'the server logged something');
  assert.deepEqual(leaks(server.logs.join('')), [], 'key in the server log');
});

test('with --simulate the Gateway panel is connected to the simulator and shows its balance', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    assert.match(await page.textContent('[data-testid="connection-title"]'), /KIE simulator · 127\.0\.0\.1:\d+/);
    assert.equal(await page.textContent('[data-testid="credit-balance"]'), '10,000', 'with thousands separators');
    assert.match(await page.textContent('[data-testid="connection-detail"]'), /Answered chat\/credit in \d+\.\d ms/);
    assert.match(await page.textContent('header.masthead'), /Simulator — requests go to the bundled KIE simulator/);
    assert.equal((await page.textContent('h1 + [data-testid="connection-badge"], .title-row [data-testid="connection-badge"]')).trim(), 'Simulator');
    assert.deepEqual(errors, []);
    await page.screenshot({ path: join(artifacts, 'control-room-simulate.png'), fullPage: true });
    await context.close();
  } finally {
    await server.stop();
  }
});
