// Money and limits in a real Chromium, in --simulate mode: a per-day cost rule set in
// Settings refuses the submission that would break it, with the rule's numbers, and its
// meter on the Control Room stands at the cap, and its Delete asks first (Cancel keeps it); a model pinned in the Market is first in the composer after a
// reload; the Market's calculator and the composer's estimate price the exact inputs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN, MAKER, artifacts, launchBrowser, openHydrated, signIn, startServer } from './harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

async function submit(page, prompt) {
  await page.fill('[data-testid="composer-prompt"]', prompt);
  const prev = await page.textContent('.composer > p').catch(() => null);
  await page.click('[data-testid="composer-submit"]');
  await page.waitForFunction((p) => {
    const el = document.querySelector('[data-testid="submit-result"], [data-testid="submit-error"]');
    return el && el.textContent !== p;
  }, prev, { timeout: 10_000 });
  const error = await page.$('[data-testid="submit-error"]');
  return error ? { error: (await error.textContent()).trim() } : { ok: (await page.textContent('[data-testid="submit-result"] code')).trim() };
}

/** Follows the link `selector` to another page of the console and waits for it to hydrate. */
async function follow(page, selector) {
  await Promise.all([page.waitForNavigation(), page.click(selector)]);
  await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
}

test('a per-day rule set in Settings refuses the task that would break it', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/settings');
    // $0.06 a day for project e2e: 12 credits, three 4-credit images.
    await page.fill('[data-testid="budget-project"]', 'e2e');
    await page.fill('[data-testid="budget-per_day"]', '0.06');
    await page.click('[data-testid="budget-save"]');
    await page.waitForSelector('[data-testid="budget-rules"] .rule-name:has-text("project e2e")', { timeout: 10_000 });
    await follow(page, 'nav.sections a[href="/#operate"]');

    await page.selectOption('[data-testid="composer-model"]', 'google/imagen4-fast');
    await page.fill('[data-testid="composer-project"]', 'e2e');
    assert.match(await page.textContent('[data-testid="composer-estimate"]'), /Estimate 4 credits · \$0\.020/);
    for (let i = 0; i < 3; i += 1) {
      const r = await submit(page, `frame ${i}`);
      assert.ok(r.ok, `submission ${i} admitted: ${JSON.stringify(r)}`);
    }
    const refused = await submit(page, 'one more');
    assert.ok(refused.error, 'the fourth is refused');
    assert.match(refused.error, /Refused by the cost rule "project e2e — max per rolling 24 h"/);
    assert.match(refused.error, /\$0\.06 \(12 credits\) used of \$0\.06 \(12 credits\).*\$0\.00 \(0 credits\) left; this task needs \$0\.02 \(4 credits\)/);
    // The meter stands at the cap, live.
    await page.waitForSelector('[data-testid="budget-meter"][data-percent="100"]', { timeout: 10_000 });
    assert.equal(await page.locator('[data-panel="10"] tr[data-task]').count(), 3, 'the refused task left no row');
    // The refusal itself is a 402 answer, which Chromium logs; nothing else may be.
    assert.deepEqual(errors.filter((e) => !/status of 402/.test(e)), [], 'no other console errors');
    await page.screenshot({ path: join(artifacts, 'budget-refusal.png'), fullPage: true });
    // Deleting the rule asks first; Cancel keeps it; the second answer deletes it.
    await follow(page, '[data-testid="budget-edit-link"]');
    const rule = '[data-testid="budget-rules"] .rule-name:has-text("project e2e")';
    await page.click('[data-testid="budget-delete"]');
    await page.waitForSelector('#rules [data-testid="confirm-question"]:has-text("Delete the cost rule for project e2e?")', { timeout: 10_000 });
    await page.click('#rules [data-testid="confirm-cancel"]');
    await page.waitForSelector('#rules [data-testid="cancelled"]', { timeout: 10_000 });
    assert.equal(await page.locator(rule).count(), 1, 'cancelled: the rule stays');
    await page.click('[data-testid="budget-delete"]');
    await page.click('#rules [data-testid="confirm-yes"]');
    await page.waitForSelector('#rules [data-testid="budget-saved"]:has-text("Rule deleted.")', { timeout: 10_000 });
    assert.equal(await page.locator(rule).count(), 0, 'deleted once confirmed');
    await context.close();
  } finally {
    await server.stop();
  }
});

test('a model pinned in the Market comes first in the composer after a reload', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    const row = page.locator('[data-panel="03"] li[data-model="veo3"]');
    await row.locator('[data-testid="pin-toggle"]').click();
    await page.waitForSelector('[data-testid="pinned-list"] li[data-model="veo3"]', { timeout: 10_000 });
    // The model's page prices the exact inputs.
    await row.locator('.model-name').click();
    await page.waitForSelector('[data-panel="03"] [data-testid="calc-estimate"]');
    assert.match(await row.locator('[data-testid="calc-estimate"]').textContent(), /1 × 120 cr = 120 credits · \$0\.60/);

    await page.reload();
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    const first = await page.$eval('[data-testid="composer-model"] option', (o) => o.value);
    assert.equal(first, 'veo3', 'the pinned model is first');
    assert.equal(await page.inputValue('[data-testid="composer-model"]'), 'veo3');
    await page.waitForSelector('[data-testid="pinned-list"] li[data-model="veo3"]');
    assert.deepEqual(errors, [], 'no console errors');
    await page.screenshot({ path: join(artifacts, 'pinned.png'), fullPage: true });
    await context.close();
  } finally {
    await server.stop();
  }
});

test('a producer runs tasks in two projects, exports the receipt CSV from panel 09 and sees the chart move', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/', { width: 1280, height: 900 }, MAKER);
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    const ledger = page.locator('[data-panel="09"]');
    await ledger.locator('[data-testid="chart-by"]').selectOption('project');
    const chart = async () => page.$eval('[data-panel="09"] [data-testid="spend-chart"]', async (img) => (await fetch(img.src)).text());
    assert.match(await chart(), /No spend folded yet/, 'the chart starts empty');

    const ids = {};
    for (const project of ['alpha', 'beta']) {
      await page.selectOption('[data-testid="composer-model"]', 'google/imagen4-fast');
      await page.fill('[data-testid="composer-project"]', project);
      ids[project] = (await submit(page, `a ${project} frame`)).ok;
      assert.ok(ids[project], `submitted in ${project}`);
    }
    // Both end and are folded; panel 09 lists a receipt for each production, live.
    for (const project of ['alpha', 'beta']) {
      await ledger.locator(`[data-testid="receipts"] tr[data-project="${project}"]`).waitFor({ timeout: 40_000 });
    }
    await page.waitForFunction(() => [...document.querySelectorAll('[data-panel="09"] [data-testid="receipt-credits"]')].map((c) => c.textContent.trim()).join(',') === '4,4', null, { timeout: 20_000 });
    // The chart moved: a bar per production, with KIE's figures.
    await page.waitForFunction(async () => {
      const img = document.querySelector('[data-panel="09"] [data-testid="spend-chart"]');
      const svg = await (await fetch(img.src)).text();
      return svg.includes('<title>alpha: 4 credits') && svg.includes('<title>beta: 4 credits');
    }, null, { timeout: 20_000 });
    assert.equal(await ledger.locator('[data-testid="chart-table"] tbody tr').count(), 2, 'the chart reads as a table too');

    // The receipt CSV of one production, downloaded from the panel, holds only its task.
    const [download] = await Promise.all([page.waitForEvent('download'), ledger.locator('tr[data-project="alpha"] [data-testid="receipt-csv"]').click()]);
    assert.equal(download.suggestedFilename(), 'receipt-alpha.csv');
    const csv = readFileSync(await download.path(), 'utf8');
    const rows = csv.trim().split('\r\n');
    assert.equal(rows.length, 2, `a header and one line: ${csv}`);
    assert.ok(rows[1].startsWith(`"${ids.alpha}"`), rows[1]);
    assert.ok(rows[1].includes('"alpha"') && !csv.includes(ids.beta), 'projects never mixed');
    assert.deepEqual(errors, [], 'no console errors');
    await ledger.screenshot({ path: join(artifacts, 'ledger.png') });
    await context.close();
  } finally {
    await server.stop();
  }
});

test('a person who asks is notified by the browser when their task ends and when a cap passes 80 %', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['notifications'], { origin: server.base });
    // The page's own Notification, watched: every notification it shows is written down.
    await context.addInitScript(() => {
      const Real = window.Notification;
      window.told = [];
      window.Notification = class extends Real {
        constructor(title, options) { super(title, options); window.told.push(title); }
      };
    });
    const page = await context.newPage();
    await signIn(page, server.base + '/settings', ADMIN);
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    // $0.05 a day for project notify: 10 credits, so two 4-credit images pass 80 %.
    await page.fill('[data-testid="budget-project"]', 'notify');
    await page.fill('[data-testid="budget-per_day"]', '0.05');
    await page.click('[data-testid="budget-save"]');
    await page.waitForSelector('#rules [data-testid="budget-saved"]', { timeout: 10_000 });
    await follow(page, 'nav.sections a[href="/#operate"]');

    const notify = page.locator('[data-testid="notify"]');
    assert.equal(await notify.textContent(), 'Notify me', 'off until asked');
    await notify.click();
    await page.waitForFunction(() => document.querySelector('[data-testid="notify"]').getAttribute('aria-pressed') === 'true', null, { timeout: 5_000 });
    await page.selectOption('[data-testid="composer-model"]', 'google/imagen4-fast');
    await page.fill('[data-testid="composer-project"]', 'notify');
    const ids = [];
    for (const n of [1, 2]) {
      const r = await submit(page, `notified ${n}`);
      assert.ok(r.ok, JSON.stringify(r));
      ids.push(r.ok);
    }
    await page.waitForFunction((ids) => ids.every((id) => window.told.some((t) => t.startsWith('Task done · ' + id))), ids, { timeout: 40_000 });
    await page.waitForFunction(() => window.told.some((t) => t.startsWith('Cost rule alert · project notify') && t.includes('80 % reached')), null, { timeout: 20_000 });
    // Switched off, nothing more is told.
    await notify.click();
    await page.waitForFunction(() => document.querySelector('[data-testid="notify"]').textContent === 'Notify me', null, { timeout: 5_000 });
    const told = await page.evaluate(() => window.told.length);
    await page.fill('[data-testid="composer-project"]', 'elsewhere');
    const r = await submit(page, 'not notified');
    assert.ok(r.ok, JSON.stringify(r));
    await page.waitForSelector(`tr[data-task="${r.ok}"][data-state="success"]`, { timeout: 40_000 });
    assert.equal(await page.evaluate(() => window.told.length), told, 'off means off');
    await context.close();
  } finally {
    await server.stop();
  }
});
