// A language model drafts a prompt in the composer, in a real Chromium in --simulate mode:
// "Draft with it" streams the model's text into the prompt box, the call shows in the Task
// Monitor as a chat with its tokens, and the drafted prompt is then submitted as a task.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openHydrated, startServer } from './harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

test('a prompt drafted by a language model in the composer, then submitted as a task', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    // No source prices KIE's language models: a per-job cap lets them run (and is held).
    const rule = await page.evaluate(async () => {
      const r = await fetch('/api/set_cost_rule', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'per_job=1' });
      return r.status;
    });
    assert.equal(rule, 200);

    await page.selectOption('[data-testid="composer-model"]', 'veo3');
    await page.fill('[data-testid="composer-project"]', 'e2e');
    await page.fill('[data-testid="composer-prompt"]', 'a lighthouse in a storm');
    await page.selectOption('[data-testid="draft-model"]', 'gemini-3-flash');
    await page.click('[data-testid="draft"]');
    // The text arrives in pieces: the box holds part of the draft before all of it.
    const seen = new Set();
    const deadline = Date.now() + 20_000;
    for (;;) {
      const value = await page.inputValue('[data-testid="composer-prompt"]');
      seen.add(value);
      const status = await page.textContent('[data-testid="draft-status"]').catch(() => '');
      if (/^Drafted/.test(status ?? '')) break;
      if (Date.now() > deadline) throw new Error(`the draft never finished: ${status}`);
      await page.waitForTimeout(20);
    }
    const drafted = await page.inputValue('[data-testid="composer-prompt"]');
    assert.match(drafted, /^Draft: .*a lighthouse in a storm/, drafted);
    assert.ok([...seen].some((v) => v.length > 0 && v.length < drafted.length && drafted.startsWith(v)), 'the draft streamed in: partial texts were shown');
    assert.match(await page.textContent('[data-testid="draft-status"]'), /estimate \d/);

    // The call is on record as a chat, with its tokens.
    await page.waitForSelector('tr [data-testid="task-chat"]', { timeout: 10_000 });
    assert.match(await page.textContent('tr [data-testid="task-chat"]'), /chat · \d+ → \d+ tokens/);

    // And the drafted prompt becomes a task.
    await page.click('[data-testid="composer-submit"]');
    await page.waitForSelector('[data-testid="submit-result"] code', { timeout: 10_000 });
    const id = (await page.textContent('[data-testid="submit-result"] code')).trim();
    await page.waitForSelector(`tr[data-task="${id}"]`, { timeout: 10_000 });
    assert.match(await page.textContent(`tr[data-task="${id}"]`), /Draft: /);
    assert.deepEqual(errors, [], 'no console errors');
    await context.close();
  } finally {
    await server.stop();
  }
});
