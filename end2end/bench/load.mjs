// The console's load, measured in Debian's Chromium against the release build (--simulate):
// bytes over the wire and time to interactive, cold (an empty cache) and warm (a second visit),
// on loopback and with the network throttled to Chrome DevTools' "Fast 3G" preset.
//
//   cd end2end && node bench/load.mjs            # 5 cold + 5 warm loads per condition
//   BENCH_SMOKE=1 node bench/load.mjs            # one of each (the test command's smoke run)
//
// Time to interactive: from the navigation's start to the moment the islands have hydrated
// (the Console island sets body[data-hydrated]; every handler is attached then). Also
// DOMContentLoaded and the load event. Bytes: each response's encoded body as Chromium counted it.
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { launchBrowser, root, sessionCookie, startServer } from '../tests/harness.mjs';

const runs = process.env.BENCH_SMOKE ? 1 : 5;
// Chrome DevTools' "Fast 3G": 1.6 Mbit/s down and 750 kbit/s up, each × 0.9; 150 ms × 3.75 latency.
const FAST_3G = { offline: false, latency: 562.5, downloadThroughput: (1.6 * 1024 * 1024 / 8) * 0.9, uploadThroughput: (750 * 1024 / 8) * 0.9 };

const browser = await launchBrowser();
const server = await startServer({}, ['--simulate']);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

async function load(context, path, throttle) {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  if (throttle) await cdp.send('Network.emulateNetworkConditions', throttle);
  await page.addInitScript(() => {
    new MutationObserver((_, obs) => {
      if (document.body?.dataset.hydrated === 'true') { window.__interactive = performance.now(); obs.disconnect(); }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-hydrated'] });
  });
  let bundle = 0;
  let all = 0;
  page.on('requestfinished', async (req) => {
    try {
      // -1: served from the cache, nothing on the wire.
      const responseBodySize = Math.max(0, (await req.sizes()).responseBodySize);
      all += responseBodySize;
      if (/\.(js|wasm|css)$/.test(new URL(req.url()).pathname)) bundle += responseBodySize;
    } catch { /* the page closed first */ }
  });
  await page.goto(server.base + path, { waitUntil: 'load', timeout: 120_000 });
  if (path === '/') await page.waitForFunction(() => window.__interactive !== undefined, null, { timeout: 120_000 });
  await page.waitForLoadState('networkidle');
  const t = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return { interactive: window.__interactive ?? nav.loadEventEnd, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd };
  });
  await page.close();
  return { ...t, bundle, all };
}

const rows = [];
const cookie = await sessionCookie(server.base);
for (const [condition, throttle] of [['loopback', null], ['Fast 3G', FAST_3G]]) {
  for (const [page, path] of [['console', '/'], ['sign-in', '/signin']]) {
    const cold = [];
    const warm = [];
    for (let i = 0; i < runs; i += 1) {
      const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
      if (path === '/') await context.addCookies([cookie]);
      cold.push(await load(context, path, throttle));
      warm.push(await load(context, path, throttle));
      await context.close();
    }
    for (const [visit, xs] of [['cold', cold], ['warm', warm]]) {
      rows.push({ condition, page, visit, bundle: median(xs.map((x) => x.bundle)), all: median(xs.map((x) => x.all)), dcl: median(xs.map((x) => x.dcl)), interactive: median(xs.map((x) => x.interactive)), load: median(xs.map((x) => x.load)) });
    }
  }
}
await server.stop();
await browser.close();

const chromium = spawnSync('/usr/bin/chromium', ['--version'], { encoding: 'utf8' }).stdout.trim();
const rev = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout.trim();
console.log(`\n${new Date().toISOString().slice(0, 10)} · ${os.cpus().length} × ${os.cpus()[0]?.model} · ${chromium} · commit ${rev} · median of ${runs}\n`);
console.log('| network | page | visit | JS+WASM+CSS on the wire | everything on the wire | DOMContentLoaded | interactive (hydrated) | load |');
console.log('|---|---|---|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const ms = (x) => `${Math.round(x)} ms`;
  console.log(`| ${r.condition} | ${r.page} | ${r.visit} | ${r.bundle.toLocaleString('en')} B | ${r.all.toLocaleString('en')} B | ${ms(r.dcl)} | ${r.page === 'console' ? ms(r.interactive) : '— (no bundle)'} | ${ms(r.load)} |`);
}
const sane = rows.every((r) => r.interactive > 0 && r.load > 0) && rows.some((r) => r.visit === 'cold' && r.page === 'console' && r.bundle > 0);
if (!sane) {
  console.error('the figures are not sane');
  process.exit(1);
}
