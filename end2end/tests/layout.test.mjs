// The page as it reaches a browser and as an operator reads it, in a real Chromium against the
// release build: what a cold load transfers (JS + WASM + CSS, compressed, under the budget) and
// how it is cached; the sign-in page without the bundle; the Task Monitor and the composer above
// the fold at 1440×900, the page about four screens tall; no control or table out of its panel
// and no sideways scrolling at 1440×900 and 390×844; no word broken mid-word; no text under 12 px; deep links and
// the keyboard; and axe-core's WCAG 2 A/AA rules. Positions are read from the DOM.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ADMIN, PASSWORD, artifacts, launchBrowser, sessionCookie, startServer } from './harness.mjs';

/** The budgets of issue 15, in bytes over the wire. */
const CONSOLE_BUDGET = 200_000;
const SIGNIN_BUDGET = 60_000;

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/**
 * Loads `path` in a fresh context (empty cache) and sums what came over the wire, by kind:
 * every response's encoded body size as Chromium counted it.
 */
async function coldLoad(base, path, { viewport = { width: 1440, height: 900 }, cookie, colorScheme = 'dark' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme });
  if (cookie) await context.addCookies([cookie]);
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  const responses = [];
  page.on('requestfinished', async (req) => {
    try {
      const res = await req.response();
      const sizes = await req.sizes();
      responses.push({ url: req.url(), type: req.resourceType(), status: res?.status(), bytes: sizes.responseBodySize, headers: res ? await res.allHeaders() : {} });
    } catch { /* the page closed first: a late panel reload, not part of the load */ }
  });
  await page.goto(base + path);
  return { context, page, errors, responses };
}

/** JS, WASM and CSS bytes of a load. */
const bundleBytes = (responses) => responses.filter((r) => /\.(js|wasm|css)(\?|$)/.test(new URL(r.url).pathname)).reduce((n, r) => n + r.bytes, 0);

test('a cold signed-in load of the console stays under 200 KB of JS + WASM + CSS, compressed and cached as immutable', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const cookie = await sessionCookie(server.base);
    const { context, page, errors, responses } = await coldLoad(server.base, '/', { cookie });
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    await page.waitForLoadState('networkidle');
    const bundle = responses.filter((r) => /\.(js|wasm|css)$/.test(new URL(r.url).pathname));
    const kinds = bundle.map((r) => new URL(r.url).pathname.split('.').pop()).sort();
    assert.deepEqual([...new Set(kinds)], ['css', 'js', 'wasm'], `the bundle loaded: ${bundle.map((r) => r.url).join(', ')}`);
    const total = bundleBytes(responses);
    console.log(`console cold load: ${total} bytes of JS + WASM + CSS (${bundle.map((r) => `${new URL(r.url).pathname} ${r.bytes}`).join(', ')})`);
    assert.ok(total <= CONSOLE_BUDGET, `console cold load is ${total} bytes, over ${CONSOLE_BUDGET}`);
    for (const r of bundle) {
      const name = new URL(r.url).pathname;
      assert.match(name, /^\/pkg\/control-room\.[A-Za-z0-9_-]{8,}\.(js|wasm|css)$/, `hashed name: ${name}`);
      assert.equal(r.headers['cache-control'], 'public, max-age=31536000, immutable', `${name} cached as immutable`);
      assert.equal(r.headers['content-encoding'], 'br', `${name} served as brotli`);
    }
    const html = responses.find((r) => r.type === 'document');
    assert.equal(html.headers['cache-control'], 'no-cache', 'the page itself is revalidated');
    assert.equal(html.headers['content-encoding'], 'br', 'the page is compressed too');
    // gzip for a client without brotli, and the plain file for one with neither.
    const wasm = bundle.find((r) => r.url.endsWith('.wasm')).url;
    const gz = await fetch(wasm, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(gz.headers.get('content-encoding'), 'gzip');
    const plain = await fetch(wasm, { headers: { 'accept-encoding': 'identity' } });
    assert.equal(plain.headers.get('content-encoding'), null);
    assert.ok(Number(plain.headers.get('content-length')) > Number(gz.headers.get('content-length')), 'compressed is smaller');
    assert.equal((await fetch(`${server.base}/pkg/control-room.no-such-hash.wasm`)).headers.get('cache-control'), 'no-cache', 'a miss is not cached for a year');
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
});

test('the sign-in page loads no bundle, stays under 60 KB and signs in without WASM', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, responses } = await coldLoad(server.base, '/signin');
    await page.waitForLoadState('networkidle');
    const total = bundleBytes(responses);
    console.log(`sign-in cold load: ${total} bytes of JS + WASM + CSS`);
    assert.ok(total <= SIGNIN_BUDGET, `sign-in page is ${total} bytes, over ${SIGNIN_BUDGET}`);
    assert.equal(responses.filter((r) => /\.(js|wasm)$/.test(new URL(r.url).pathname)).length, 0, 'no script or WASM on the sign-in page');
    await context.close();
    // With JavaScript off altogether, the form still signs in and the console still renders.
    const noJs = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1440, height: 900 } });
    const p = await noJs.newPage();
    await p.goto(`${server.base}/signin`);
    await p.fill('[data-testid="signin-email"]', ADMIN);
    await p.fill('[data-testid="signin-password"]', PASSWORD);
    await Promise.all([p.waitForURL((u) => u.pathname === '/'), p.click('[data-testid="signin-submit"]')]);
    await p.waitForSelector('[data-panel="05"] [data-testid="budget-meter"], [data-panel="05"] [data-testid="budget-none"]');
    assert.match(await p.textContent('[data-panel="01"]'), /KIE simulator/, 'panels are rendered on the server');
    await Promise.all([p.waitForURL((u) => u.pathname === '/settings'), p.click('[data-testid="settings-link"]')]);
    await p.waitForSelector('#rules [data-testid="budget-form"]');
    await noJs.close();
  } finally {
    await server.stop();
  }
});

/** Elements that stick out of their panel (outside any scrolling wrapper, or a panel that scrolls), and the page's sideways overflow. */
async function spills(page) {
  return page.evaluate(() => {
    const scrolls = (el) => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(el).overflowX);
    const out = [];
    for (const panel of document.querySelectorAll('section.panel, nav.status-strip')) {
      // A panel that scrolls sideways itself (the strip on a phone) holds what it has.
      if (scrolls(panel)) continue;
      const box = panel.getBoundingClientRect();
      for (const el of panel.querySelectorAll('*')) {
        let clipped = false;
        for (let a = el.parentElement; a && a !== panel; a = a.parentElement) if (scrolls(a)) { clipped = true; break; }
        if (clipped) continue;
        const r = el.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        if (getComputedStyle(el).position === 'absolute' && el.closest('.sr-only')) continue;
        if (r.right > box.right + 1 || r.left < box.left - 1) {
          out.push(`${panel.id || panel.dataset.panel}: <${el.tagName.toLowerCase()} class="${el.className}"> ${Math.round(r.left)}–${Math.round(r.right)} outside ${Math.round(box.left)}–${Math.round(box.right)}`);
        }
      }
    }
    return { out, sideways: document.documentElement.scrollWidth - document.documentElement.clientWidth };
  });
}

/**
 * axe-core's WCAG 2 A/AA rules on the page as it is: the violations found, one line each
 * (having checked that at least `minPasses` rules ran and passed: a small page has fewer).
 */
async function axeViolations(page, minPasses = 20) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  assert.ok(result.passes.length >= minPasses, `axe ran its rules (${result.passes.length} passed)`);
  return result.violations.map((v) => `${v.id} (${v.nodes.length}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
}

/** Visible text set under 12 px: every element with a text node of its own, by its computed size. */
async function smallText(page) {
  return page.evaluate(() => [...document.querySelectorAll('body *')]
    .filter((el) => el.offsetParent !== null && [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim()))
    .filter((el) => parseFloat(getComputedStyle(el).fontSize) < 12)
    .map((el) => `<${el.tagName.toLowerCase()} class="${el.className}"> ${getComputedStyle(el).fontSize}: ${el.textContent.trim().slice(0, 30)}`)
    .slice(0, 10));
}

/** Words broken across lines: a one-word element (a state, a badge, a header cell) with more than one line box. */
async function brokenWords(page) {
  return page.evaluate(() => [...document.querySelectorAll('.state, .badge, th, .strip-value, .model-price')]
    .filter((el) => el.offsetParent !== null && !el.textContent.trim().includes(' ') && el.getClientRects().length > 1)
    .map((el) => el.textContent.trim()));
}

for (const size of [{ width: 1440, height: 900 }, { width: 390, height: 844 }]) {
  test(`at ${size.width}×${size.height}: nothing spills out of its panel, no word breaks mid-word, no text under 12 px, axe finds nothing`, async () => {
    const server = await startServer({}, ['--simulate']);
    try {
      const cookie = await sessionCookie(server.base);
      const { context, page, errors } = await coldLoad(server.base, '/', { viewport: size, cookie });
      await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
      const phone = size.width < 720;
      // On a phone the composer is behind its button, and the Monitor comes before it.
      assert.equal(await page.isVisible('[data-testid="composer-prompt"]'), !phone, 'the composer is open on a wide screen only');
      if (phone) await page.click('[data-testid="compose-open"]');
      // A task on record, so the monitor's table is there to be measured.
      await page.selectOption('[data-testid="composer-model"]', 'google/imagen4-fast');
      await page.fill('[data-testid="composer-prompt"]', 'a test card with colour bars, wide enough to wrap');
      await page.click('[data-testid="composer-submit"]');
      await page.waitForSelector('tr[data-task][data-state="success"]', { timeout: 40_000 });
      if (phone) {
        // The first screen of a phone shows a task (a card, not a table to scroll sideways),
        // and the strip stays in view however far the page is scrolled.
        await page.reload();
        await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
        await page.evaluate(() => window.scrollTo(0, 0));
        const row = await page.$eval('tr[data-task]', (el) => el.getBoundingClientRect());
        assert.ok(row.top < size.height - 40, `the first task is at ${row.top}px, below the phone's first screen`);
        assert.ok(row.right <= size.width, `the task's card ends at ${row.right}px, wider than the screen`);
        await page.screenshot({ path: join(artifacts, 'console-390-first.png') });
        await page.evaluate(() => window.scrollTo(0, 3000));
        assert.equal(await page.$eval('nav.status-strip', (el) => el.getBoundingClientRect().top), 0, 'the strip sticks to the top');
        await page.evaluate(() => window.scrollTo(0, 0));
      }
      // And a model page open in the Market.
      await page.click('[data-panel="03"] li[data-model="veo3"] .model-name');
      await page.waitForSelector('[data-panel="03"] li[data-model="veo3"] [data-testid="calc-estimate"]');

      const { out, sideways } = await spills(page);
      assert.deepEqual(out, [], 'controls inside their panels');
      assert.ok(sideways <= 0, `the page scrolls sideways by ${sideways}px`);
      assert.deepEqual(await brokenWords(page), [], 'no word broken across lines');
      assert.deepEqual(await smallText(page), [], 'no text under 12 px');

      const height = await page.evaluate(() => document.documentElement.scrollHeight);
      console.log(`${size.width}×${size.height}: the page is ${height}px tall (${(height / size.height).toFixed(1)} screens)`);
      if (size.width === 1440) {
        // The Task Monitor and its composer above the fold; the whole console about four screens.
        const monitor = await page.$eval('#monitor', (el) => el.getBoundingClientRect().top + window.scrollY);
        const submit = await page.$eval('[data-testid="composer-submit"]', (el) => el.getBoundingClientRect().bottom + window.scrollY);
        assert.ok(monitor < 300, `the Task Monitor starts ${monitor}px down`);
        assert.ok(submit < size.height, `the composer's Submit is at ${submit}px, below the fold`);
        assert.ok(height <= 4 * size.height, `the page is ${height}px, over four screens`);
        // The Monitor fills its column: the blank under it is at most 10 % of the column beside.
        const [mon, side] = await page.$$eval('#monitor, .operate > .side', (els) => els.map((el) => el.getBoundingClientRect()));
        assert.ok(side.bottom - mon.bottom <= 0.1 * side.height, `the Monitor ends at ${mon.bottom}px, the column beside it at ${side.bottom}px`);
        // The spend chart is drawn 300 wide with 12 px text: shown whole, not scaled down.
        const chart = await page.$eval('[data-testid="spend-chart"]', (el) => el.getBoundingClientRect().width);
        assert.ok(chart >= 300, `the spend chart is ${chart}px wide: its text is under 12 px`);
      }

      assert.deepEqual(await axeViolations(page), [], 'axe-core WCAG 2 A/AA');

      assert.deepEqual(errors, []);
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: join(artifacts, `console-${size.width}.png`), fullPage: size.width === 390 ? false : true });
      await context.close();
    } finally {
      await server.stop();
    }
  });
}

test('on a light system setting the console is light, and axe still finds nothing', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const cookie = await sessionCookie(server.base);
    const { context, page, errors } = await coldLoad(server.base, '/', { cookie, colorScheme: 'light' });
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    await page.selectOption('[data-testid="composer-model"]', 'google/imagen4-fast');
    await page.fill('[data-testid="composer-prompt"]', 'a light test card');
    await page.click('[data-testid="composer-submit"]');
    await page.waitForSelector('tr[data-task][data-state="success"]', { timeout: 40_000 });
    // The page, a panel and a field are light; the text on them dark.
    const shades = await page.evaluate(() => {
      const lum = (c) => { const [r, g, b] = c.match(/[\d.]+/g).map(Number); return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; };
      const of = (sel, prop) => lum(getComputedStyle(document.querySelector(sel))[prop]);
      return { page: of('body', 'backgroundColor'), panel: of('section.panel', 'backgroundColor'), field: of('[data-testid="composer-prompt"]', 'backgroundColor'), ink: of('body', 'color') };
    });
    for (const k of ['page', 'panel', 'field']) assert.ok(shades[k] > 0.85, `the ${k} is light (${shades[k].toFixed(2)})`);
    assert.ok(shades.ink < 0.2, `the text is dark (${shades.ink.toFixed(2)})`);
    assert.deepEqual(await axeViolations(page), [], 'axe-core WCAG 2 A/AA, colour contrast included');
    assert.deepEqual(errors, []);
    await page.screenshot({ path: join(artifacts, 'console-light.png') });
    await context.close();
  } finally {
    await server.stop();
  }
});

test('axe finds nothing on the sign-in page, a task\'s story page or the settings', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const signin = await coldLoad(server.base, '/signin');
    await signin.page.waitForLoadState('networkidle');
    assert.deepEqual(await axeViolations(signin.page, 8), [], 'axe-core WCAG 2 A/AA on the sign-in page');
    await signin.context.close();
    const cookie = await sessionCookie(server.base);
    const { context, page, errors } = await coldLoad(server.base, '/', { cookie });
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    await page.selectOption('[data-testid="composer-model"]', 'google/imagen4-fast');
    await page.fill('[data-testid="composer-prompt"]', 'a story to read');
    await page.click('[data-testid="composer-submit"]');
    const row = await page.waitForSelector('tr[data-task][data-state="success"]', { timeout: 40_000 });
    const id = await row.getAttribute('data-task');
    await page.goto(`${server.base}/tasks/${id}`);
    assert.match(await page.textContent('[data-testid="story-state"]'), /^done$/, 'the story says the state in words');
    assert.deepEqual(await axeViolations(page), [], 'axe-core WCAG 2 A/AA on a task\'s story');
    await page.goto(`${server.base}/settings`);
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    await page.waitForSelector('#rules [data-testid="budget-form"]');
    assert.deepEqual(await axeViolations(page), [], 'axe-core WCAG 2 A/AA on the settings');
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
});

test('the status strip stays in view and links to its panels; sections and panels have deep links; the keyboard reaches the monitor first', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const cookie = await sessionCookie(server.base);
    const { context, page } = await coldLoad(server.base, '/#budget', { cookie });
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    // A deep link lands on its panel, below the sticky strip.
    const budget = await page.$eval('#budget', (el) => el.getBoundingClientRect().top);
    const strip = await page.$eval('nav.status-strip', (el) => el.getBoundingClientRect());
    assert.ok(budget >= strip.bottom - 1 && budget < 400, `the Budget panel is at ${budget}px (the strip ends at ${strip.bottom}px)`);
    assert.equal(strip.top, 0, 'the strip sticks to the top');
    assert.match(await page.textContent('[data-testid="strip-connection"]'), /Simulator/);
    assert.match(await page.textContent('[data-testid="strip-balance"]'), /^10,000$/);
    const links = await page.$$eval('nav.status-strip a', (as) => as.map((a) => a.getAttribute('href')));
    for (const href of links) assert.equal(await page.locator(href).count(), 1, `${href} names a panel`);
    for (const s of ['operate', 'money', 'library', 'team']) assert.equal(await page.locator(`nav.sections a[href="#${s}"]`).count(), 1);

    // A task submitted moves the strip's in-flight figure, live.
    await page.goto(`${server.base}/`);
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.getAttribute('href')), '#monitor', 'the first Tab is the skip link');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => location.hash), '#monitor');
    await page.selectOption('[data-testid="composer-model"]', 'google/imagen4-fast');
    await page.fill('[data-testid="composer-prompt"]', 'a strip test');
    await page.click('[data-testid="composer-submit"]');
    await page.waitForFunction(() => document.querySelector('[data-testid="strip-in-flight"] .strip-value')?.textContent.trim() === '1', null, { timeout: 15_000 });
    await page.waitForFunction(() => document.querySelector('[data-testid="strip-in-flight"] .strip-value')?.textContent.trim() === '0', null, { timeout: 40_000 });
    await context.close();
  } finally {
    await server.stop();
  }
});

/** Presses Tab until `selector` has the focus (at most `most` times); false if it never does. */
async function tabTo(page, selector, most = 60) {
  for (let i = 0; i < most; i += 1) {
    if (await page.evaluate((sel) => document.activeElement?.matches(sel) ?? false, selector)) return true;
    await page.keyboard.press('Tab');
  }
  return false;
}

test('by keyboard alone: sign in, send a task, search, open its story and retry it; "?" lists the shortcuts', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${server.base}/signin`);
    assert.ok(await tabTo(page, '[data-testid="signin-email"]'), 'Tab reaches the email');
    await page.keyboard.type(ADMIN);
    await page.keyboard.press('Tab');
    await page.keyboard.type(PASSWORD);
    await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.keyboard.press('Enter')]);
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });

    // A task that will fail, written and sent from the keyboard (Ctrl+Enter in the prompt).
    assert.ok(await tabTo(page, '[data-testid="composer-prompt"]'), 'Tab reaches the prompt');
    await page.keyboard.type('sim:fail by keyboard');
    await page.keyboard.press('Control+Enter');
    const id = (await (await page.waitForSelector('[data-testid="submit-result"] code', { timeout: 10_000 })).textContent()).trim();
    await page.waitForSelector(`tr[data-task="${id}"][data-state="fail"]`, { timeout: 40_000 });

    // "/" searches; Esc leaves the box; "j" reaches the first row; Enter opens its story.
    await page.keyboard.press('Escape');
    await page.keyboard.press('/');
    assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'filter-q', '"/" focuses the search');
    await page.keyboard.type('by keyboard');
    await page.waitForFunction((id) => [...document.querySelectorAll('#monitor tr[data-task]')].map((r) => r.dataset.task).join() === id, id, { timeout: 10_000 });
    await page.keyboard.press('Escape');
    await page.keyboard.press('j');
    assert.equal(await page.evaluate(() => document.activeElement.closest('tr')?.dataset.task), id, '"j" focuses the first task');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#story [data-testid="story-state"]', { timeout: 10_000 });
    assert.match(await page.textContent('#story [data-testid="story-state"]'), /^failed$/);

    // "r" retries it: a new task, linked to this one.
    await page.keyboard.press('r');
    const retried = await page.waitForSelector('#failures [data-testid="retry-result"]', { timeout: 10_000 });
    assert.match(await retried.textContent(), /^Retried as cr_/);

    // "?" opens the list of shortcuts, and again closes it.
    await page.keyboard.press('?');
    assert.ok(await page.isVisible('#keys'), 'the shortcuts are listed');
    assert.match(await page.textContent('#keys'), /j \/ k/);
    await page.keyboard.press('?');
    assert.ok(!(await page.isVisible('#keys')), 'and hidden again');
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
});
