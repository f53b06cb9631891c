// The Control Room page in a real Chromium: it loads, hydrates, shows the eleven panels and
// honest empty states, and keeps the key off the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, launchBrowser, openHydrated, startServer } from './harness.mjs';

const PANELS = ['01', '02', '03', '04', '05', '06', '07', '08', '09', '10', '11'];
const TITLES = ['Connection Status', 'API Key Vault', 'Model Market', 'Favorite Models', 'Cost Rules', 'Rate Guard',
  'Asset Retention Guard', 'Callback / Webhook Manager', 'Receipt Sync', 'Task Monitor', 'Error Review'];

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('without a key the page hydrates, shows all eleven panels and says Not configured', async () => {
  const server = await startServer();
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    const numbers = await page.$$eval('section.panel', (els) => els.map((e) => e.dataset.panel));
    assert.deepEqual(numbers, PANELS);
    const titles = await page.$$eval('section.panel h2', (els) => els.map((e) => e.textContent.trim()));
    assert.deepEqual(titles, TITLES);
    assert.equal(await page.textContent('[data-testid="connection-title"]'), 'Not configured');
    assert.match(await page.textContent('header.masthead'), /BROAD\|CAST/);
    assert.match(await page.textContent('[data-panel="01"]'), /0 while disconnected/);
    assert.match(await page.textContent('[data-panel="02"]'), /Not configured/);
    assert.match(await page.textContent('[data-panel="10"]'), /No tasks on record yet/);
    // The stylesheet applied: panels sit on the dark theme.
    const bg = await page.$eval('body', (b) => getComputedStyle(b).backgroundColor);
    assert.equal(bg, 'rgb(11, 14, 19)');
    assert.deepEqual(errors, [], 'no console errors (hydration mismatches would show here)');
    await page.screenshot({ path: join(artifacts, 'control-room-1280.png'), fullPage: true });
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

test('with a key the vault shows a fingerprint, and the key is on no page, bundle or log', async () => {
  const key = 'kie-e2e-distinctive-key-4b1d9a';
  const server = await startServer({ KIE_API_KEY: key });
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    assert.match(await page.textContent('[data-panel="02"]'), /Configured/);
    // No upstream answers on loopback port 9: the panel says so instead of showing numbers.
    assert.match(await page.textContent('[data-testid="connection-detail"]'), /Cannot reach 127\.0\.0\.1/);
    assert.equal(await page.$('[data-testid="credit-balance"]'), null);
    assert.match(await page.textContent('[data-panel="02"]'), /Fingerprint\s*[0-9a-f]{8}/);
    const html = await page.content();
    assert.ok(!html.includes(key), 'key in the hydrated page');
    for (const asset of ['/pkg/control-room.js', '/pkg/control-room_bg.wasm', '/pkg/control-room.css']) {
      const body = Buffer.from(await (await fetch(server.base + asset)).arrayBuffer());
      assert.ok(body.length > 0, `${asset} served`);
      assert.ok(!body.includes(key), `key in ${asset}`);
    }
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
  assert.ok(server.logs.join('').length > 0, 'the server logged something');
  assert.ok(!server.logs.join('').includes(key), 'key in the server log');
});

test('with --simulate the Gateway panel is connected to the simulator and shows its balance', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    assert.match(await page.textContent('[data-testid="connection-title"]'), /KIE simulator · 127\.0\.0\.1:\d+/);
    assert.equal(await page.textContent('[data-testid="credit-balance"]'), '10000');
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
