// Money and limits in a real Chromium, in --simulate mode: a per-day cost rule set in the
// Budget panel refuses the submission that would break it, with the rule's numbers, and its
// meter stands at the cap; a model pinned in the Market is first in the composer after a
// reload; the Market's calculator and the composer's estimate price the exact inputs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, launchBrowser, openHydrated, startServer } from './harness.mjs';

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

test('a per-day rule set in the Budget panel refuses the task that would break it', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    // $0.06 a day for project e2e: 12 credits, three 4-credit images.
    await page.fill('[data-testid="budget-project"]', 'e2e');
    await page.fill('[data-testid="budget-per_day"]', '0.06');
    await page.click('[data-testid="budget-save"]');
    await page.waitForSelector('[data-testid="budget-rules"] .rule-name:has-text("project e2e")', { timeout: 10_000 });

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
