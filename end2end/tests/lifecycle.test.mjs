// A task's life in a real Chromium, in --simulate mode: submitted from the composer, followed
// live in the Task Monitor without a reload, its result shown; a failing task lands in the
// Error Review, grouped, and Retry submits a new task linked to it (a group retry takes each
// chain's latest once; Resolved takes one off the review), its story on a page of its own; a search, the counts
// by state and a task's story in the drawer beside the Monitor; intake paused from panel 06 holds a
// new task (the strip says so) until Resume sends it; a batch of 20 from a CSV, previewed,
// admitted whole and followed to 20/20 on panel 06; an image from the Library, and a file from
// the desk, as the input of an image-to-video task; a file from the desk on a slow line, its
// progress shown as it arrives, to its sender and to another console.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { VIEWER, artifacts, launchBrowser, openHydrated, startServer } from './harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** Submits from the composer; returns the new task's id. */
async function compose(page, model, prompt) {
  await page.selectOption('[data-testid="composer-model"]', model);
  await page.fill('[data-testid="composer-project"]', 'e2e');
  await page.fill('[data-testid="composer-prompt"]', prompt);
  const before = await page.locator('[data-testid="submit-result"] code').textContent().catch(() => null);
  await page.click('[data-testid="composer-submit"]');
  await page.waitForFunction((prev) => {
    const c = document.querySelector('[data-testid="submit-result"] code');
    return c && c.textContent !== prev;
  }, before, { timeout: 10_000 });
  return (await page.textContent('[data-testid="submit-result"] code')).trim();
}

/** Watches a row's state (no reload) until `last`; returns every state it showed. */
async function watchStates(page, id, last, timeoutMs = 40_000) {
  const seen = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await page.getAttribute(`tr[data-task="${id}"]`, 'data-state', { timeout: 1000 }).catch(() => null);
    if (state && seen[seen.length - 1] !== state) seen.push(state);
    if (state === last) return seen;
    if (Date.now() > deadline) throw new Error(`task ${id} never reached ${last}; showed ${seen.join(' → ')}`);
    await page.waitForTimeout(50);
  }
}

test('a task submitted from the composer moves through its states live and shows its result', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    let navigations = 0;
    page.on('framenavigated', () => { navigations += 1; });

    const id = await compose(page, 'google/imagen4-fast', 'a lighthouse at dusk');
    assert.match(id, /^cr_[0-9a-f]+$/);
    const seen = await watchStates(page, id, 'success');
    assert.ok(seen.length >= 3, `several states were shown live: ${seen.join(' → ')}`);
    assert.ok(seen.some((s) => ['waiting', 'queuing', 'generating'].includes(s)), `KIE's states appear: ${seen.join(' → ')}`);
    assert.equal(navigations, 0, 'no reload');
    const img = page.locator(`tr[data-task="${id}"] img.thumb`);
    await img.waitFor({ timeout: 5000 });
    await page.waitForFunction((sel) => { const i = document.querySelector(sel); return i && i.complete && i.naturalWidth > 0; },
      `tr[data-task="${id}"] img.thumb`, { timeout: 10_000 });
    assert.equal((await page.textContent(`tr[data-task="${id}"] [data-testid="task-cost"]`)).trim(), '4', 'the cost KIE charged (4 credits)');
    assert.equal((await page.textContent(`tr[data-task="${id}"] [data-testid="task-usd"]`)).trim(), '$0.02 charged', 'in dollars, marked charged');
    assert.match(await page.textContent(`tr[data-task="${id}"] [data-testid="task-kie-id"]`), /\S+/, "KIE's task id, to copy");
    assert.match(await page.getAttribute(`tr[data-task="${id}"] [data-testid="task-started"]`, 'title'), /^\d\d:\d\d:\d\d UTC$/, 'UTC on hover');
    // The Gateway's ledger meters count it, from the records, without a reload.
    await page.waitForFunction(() => {
      const values = [...document.querySelectorAll('[data-testid="ledger-meters"] .meter-value')].map((v) => v.textContent.trim());
      return values[0] === '1' && values[1] === '4' && values[2] === '0';
    }, null, { timeout: 10_000 });
    assert.deepEqual(errors, [], 'no console errors');
    await page.screenshot({ path: join(artifacts, 'task-success.png'), fullPage: true });
    await context.close();
  } finally {
    await server.stop();
  }
});

test('a failing task appears in the Error Review: Retry, a group retry, Resolved, and its story', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    const id = await compose(page, 'google/imagen4-fast', 'sim:fail on purpose');
    await watchStates(page, id, 'fail');
    const item = page.locator(`[data-panel="11"] li[data-task="${id}"]`);
    await item.waitFor({ timeout: 10_000 });
    assert.match(await item.textContent(), /Upstream error/);
    assert.match(await item.textContent(), /Internal error during generation/, "KIE's failMsg");
    await item.locator('[data-testid="retry"]').click();
    await page.waitForSelector('[data-testid="retry-result"] code', { timeout: 10_000 });
    const retried = (await page.textContent('[data-testid="retry-result"] code')).trim();
    assert.notEqual(retried, id);
    const row = page.locator(`tr[data-task="${retried}"]`);
    await row.waitFor({ timeout: 10_000 });
    assert.match(await row.textContent(), new RegExp(`retry of ${id}`));
    // The retry fails too (the same prompt): one group of two, the first noted as retried.
    await watchStates(page, retried, 'fail');
    const group = page.locator('[data-panel="11"] [data-testid="review-group"][data-class="Upstream error"][data-model="google/imagen4-fast"]');
    await page.waitForFunction(() => document.querySelector('[data-panel="11"] [data-testid="review-group-count"]')?.textContent.trim() === '2', null, { timeout: 10_000 });
    assert.match(await group.locator(`li[data-task="${id}"]`).textContent(), new RegExp(`Retried as ${retried}`));
    // Retry the group: only the latest of the chain, once.
    await group.locator('[data-testid="retry-group"]').click();
    await page.waitForSelector('[data-testid="retry-group-result"]', { timeout: 10_000 });
    assert.equal((await page.textContent('[data-testid="retry-group-result"]')).trim(), 'Retried 1 of 1.');
    // That retry fails as well, and joins the group (live) before the count is read.
    await page.waitForFunction(() => document.querySelector('[data-panel="11"] [data-testid="review-group-count"]')?.textContent.trim() === '3', null, { timeout: 20_000 });
    // Resolve the first by hand: it leaves the review and the count drops.
    const count = async () => Number((await page.textContent('[data-testid="review-count"]')).match(/\d+/)[0]);
    const was = await count();
    await page.locator(`[data-panel="11"] li[data-task="${id}"] [data-testid="resolve"]`).click();
    await page.waitForSelector('[data-testid="resolve-result"]', { timeout: 10_000 });
    assert.equal(await page.locator(`[data-panel="11"] li[data-task="${id}"]`).count(), 0, 'it left the review');
    assert.equal(await count(), was - 1, 'and the count');
    // Its story, server-rendered on its own page: every step, in order.
    const story = await context.newPage();
    await story.goto(`${server.base}/tasks/${id}`);
    const steps = await story.locator('[data-testid="story-beat"]').allTextContents();
    const kinds = await story.locator('[data-testid="story-beat"]').evaluateAll((li) => li.map((l) => l.dataset.kind));
    assert.deepEqual(kinds.slice(0, 3), ['submitted', 'sent', 'state'], steps.join('\n'));
    assert.ok(steps.some((t) => /Failed: Upstream error/.test(t)), steps.join('\n'));
    assert.ok(steps.some((t) => t.includes(`Retried as ${retried}`)), steps.join('\n'));
    assert.ok(steps.some((t) => /Resolved: marked resolved/.test(t)), steps.join('\n'));
    await story.screenshot({ path: join(artifacts, 'task-story.png'), fullPage: true });
    assert.deepEqual(errors, [], 'no console errors');
    await page.screenshot({ path: join(artifacts, 'task-retry.png'), fullPage: true });
    await context.close();
  } finally {
    await server.stop();
  }
});

test('a search typed into the Monitor narrows it live, lives in the URL and a reload keeps it; counts by state; a story opens in the drawer', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    const kite = await compose(page, 'google/imagen4-fast', 'a red kite over the dunes');
    const boat = await compose(page, 'google/imagen4-fast', 'a paper boat on a canal');
    await page.locator(`tr[data-task="${boat}"]`).waitFor({ timeout: 10_000 });
    await page.fill('[data-testid="filter-q"]', 'KITE dun');
    await page.waitForFunction(([k, b]) => document.querySelector(`tr[data-task="${k}"]`) && !document.querySelector(`tr[data-task="${b}"]`), [kite, boat], { timeout: 10_000 });
    assert.equal(new URL(page.url()).searchParams.get('q'), 'KITE dun', 'the search is in the URL');
    // A row the search found follows its task live.
    await watchStates(page, kite, 'success');
    await page.selectOption('[data-testid="filter-state"]', 'success');
    await page.waitForFunction(() => new URL(location.href).searchParams.get('state') === 'success', null, { timeout: 10_000 });
    await page.locator(`tr[data-task="${kite}"]`).waitFor({ timeout: 10_000 });
    // A reload (or the link shared): the server lists it filtered, the form says so.
    await page.reload();
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    assert.equal(await page.inputValue('[data-testid="filter-q"]'), 'KITE dun');
    assert.equal(await page.locator(`tr[data-task="${kite}"]`).count(), 1);
    assert.equal(await page.locator(`tr[data-task="${boat}"]`).count(), 0);
    assert.match(await page.textContent('[data-testid="monitor-count"]'), /^1 tasks?$/);
    // Without a search: the counts by state (as of each read), and a state's count is the list's.
    await page.fill('[data-testid="filter-q"]', '');
    await page.selectOption('[data-testid="filter-state"]', '');
    await watchStates(page, boat, 'success');
    await page.selectOption('[data-testid="filter-state"]', 'success');
    await page.waitForFunction(() => {
      const counted = /done (\d+)/.exec(document.querySelector('[data-testid="monitor-facets"]')?.textContent ?? '');
      return counted && Number(counted[1]) >= 2 && document.querySelector('[data-testid="monitor-count"]')?.textContent === `${counted[1]} tasks`;
    }, null, { timeout: 10_000 });
    // A task's story in the drawer beside the list, closed again.
    await page.click(`tr[data-task="${kite}"] [data-testid="story-open"]`);
    await page.waitForSelector('#story:not([hidden]) [data-testid="story-id"]', { timeout: 10_000 });
    assert.equal(await page.textContent('#story [data-testid="story-id"]'), kite);
    const kinds = await page.locator('#story [data-testid="story-beat"]').evaluateAll((li) => li.map((l) => l.dataset.kind));
    assert.ok(kinds.includes('submitted') && kinds.length >= 3, `its steps: ${kinds}`);
    await page.screenshot({ path: join(artifacts, 'story-drawer.png') });
    await page.click('[data-testid="story-close"]');
    await page.waitForSelector('#story[hidden]', { state: 'attached', timeout: 10_000 });
    assert.deepEqual(errors, [], 'no console errors');
    await context.close();
  } finally {
    await server.stop();
  }
});

test('a result flips to In Library and plays from the Library copy, live', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    const id = await compose(page, 'bytedance/seedance-2', 'a paper boat on a canal');
    await watchStates(page, id, 'success');
    // Archived at once after it succeeds; the row says so without a reload.
    await page.waitForSelector(`tr[data-task="${id}"] [data-testid="task-archive"]:has-text("In Library")`, { timeout: 20_000 });
    const video = `tr[data-task="${id}"] video.thumb`;
    await page.waitForFunction((sel) => {
      const v = document.querySelector(sel);
      return v && new URL(v.currentSrc || v.src).pathname.startsWith('/library/') && v.readyState >= 1 && v.duration > 0;
    }, video, { timeout: 15_000 });
    // It plays (muted, so autoplay rules allow it) from the Library's copy.
    const played = await page.$eval(video, async (v) => {
      v.muted = true;
      await v.play();
      await new Promise((r) => setTimeout(r, 400));
      return { time: v.currentTime, src: new URL(v.currentSrc).pathname };
    });
    assert.ok(played.time > 0, `the video advanced: ${JSON.stringify(played)}`);
    assert.equal(played.src, `/library/${id}/0`);

    // Panel 07 lists it with its player, and its signed link works with no session at all.
    const item = page.locator(`[data-panel="07"] [data-testid="library-item"][data-task="${id}"]`);
    await item.waitFor({ timeout: 10_000 });
    assert.equal(await item.locator('[data-testid="library-video"]').count(), 1);
    const link = await item.locator('[data-testid="library-link"]').inputValue();
    assert.match(link, new RegExp(`/library/${id}/0\\?exp=\\d+&sig=`));
    const anon = await fetch(new URL(link, server.base));
    assert.equal(anon.status, 200);
    assert.equal(anon.headers.get('content-type'), 'video/mp4');
    assert.equal((await fetch(`${server.base}/library/${id}/0`)).status, 401, 'the plain path needs a session');
    await page.waitForFunction(() => /1 assets/.test(document.querySelector('[data-testid="library-archived"]')?.textContent ?? ''), null, { timeout: 10_000 });
    assert.deepEqual(errors, [], 'no console errors');
    await page.locator('[data-panel="07"]').screenshot({ path: join(artifacts, 'library.png') });
    await context.close();
  } finally {
    await server.stop();
  }
});

/** A 2×2 PNG (red, green, blue, white), made here as a person's file on their desk. */
const DESK_PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEklEQVR4nGP4z8DAAMIM/4EAAB/uBfsL2WiLAAAAAElFTkSuQmCC', 'base64');

test('an image from the Library (panel 07 or the composer\'s picker), and a file from the desk, become the input of an image-to-video task', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    const frame = await compose(page, 'google/imagen4-fast', 'a lighthouse at dusk');
    await watchStates(page, frame, 'success');
    await page.waitForSelector(`tr[data-task="${frame}"] [data-testid="task-archive"]:has-text("In Library")`, { timeout: 20_000 });
    // Panel 07 offers the image as an input: the composer opens with it, on a model that takes one.
    const item = page.locator(`[data-panel="07"] [data-testid="library-item"][data-task="${frame}"]`);
    await item.waitFor({ timeout: 10_000 });
    await Promise.all([page.waitForURL((u) => u.searchParams.get('input') === `${frame}/0`), item.locator('[data-testid="library-use"]').click()]);
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    assert.equal(await page.inputValue('[data-testid="composer-image"]'), `control-room://library/${frame}/0`);
    const model = await page.inputValue('[data-testid="composer-model"]');
    const video = await compose(page, model, 'the light turns slowly');
    await watchStates(page, video, 'success');
    // Its story says what it was made from and how KIE got the image.
    const story = await context.newPage();
    await story.goto(`${server.base}/tasks/${video}`);
    const beats = await story.textContent('[data-testid="story-beats"]');
    assert.match(beats, new RegExp(`made from ${frame} result 0 in the Library`));
    assert.match(beats, /input\.image_urls\[0\] \(.+\) sent to KIE as KIE's own result URL/);
    await story.close();

    // The composer's own picker offers the frame with its preview; the image field suggests its
    // reference; Use opens the composer with it.
    await page.goto(server.base + '/');
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    await page.click('[data-testid="library-picker"] summary');
    const picked = page.locator(`[data-testid="library-picker"] [data-testid="picker-item"]:has(a[href="/?input=${frame}/0#composer"])`);
    await picked.waitFor({ timeout: 10_000 });
    assert.ok(await picked.locator('img').evaluate((i) => i.complete && i.naturalWidth > 0), 'its preview loads');
    await page.selectOption('[data-testid="composer-model"]', model);
    const suggested = await page.evaluate(() => [...(document.querySelector('[data-testid="composer-image"]').list?.options ?? [])].map((o) => o.value));
    assert.ok(suggested.includes(`control-room://library/${frame}/0`), `the image field suggests it: ${suggested}`);
    await Promise.all([page.waitForURL((u) => u.searchParams.get('input') === `${frame}/0`), picked.locator('[data-testid="picker-use"]').click()]);
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    assert.equal(await page.inputValue('[data-testid="composer-image"]'), `control-room://library/${frame}/0`);

    // A file from the desk: kept in the Library, then the composer opens with it.
    await page.goto(server.base + '/');
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    await page.click('[data-testid="desk-section"] summary');
    await page.fill('[data-testid="desk-upload"] input[name="project"]', 'e2e');
    await page.setInputFiles('[data-testid="desk-file"]', { name: 'storyboard.png', mimeType: 'image/png', buffer: DESK_PNG });
    // Once sent, the form says so (read in the submit's own turn, before the page moves on).
    assert.equal(await page.isVisible('[data-testid="desk-sending"]'), false, 'nothing is said before it is sent');
    const navigated = page.waitForURL((u) => /^cr_[0-9a-f]+\/0$/.test(u.searchParams.get('input') ?? ''));
    const sending = await page.evaluate(() => {
      const form = document.querySelector('[data-testid="desk-upload"]');
      form.requestSubmit(form.querySelector('[data-testid="desk-submit"]'));
      return form.classList.contains('sending') && getComputedStyle(form.querySelector('[data-testid="desk-sending"]')).display !== 'none';
    });
    assert.ok(sending, 'the form says the file is on its way');
    await navigated;
    const desk = new URL(page.url()).searchParams.get('input').split('/')[0];
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    assert.equal(await page.inputValue('[data-testid="composer-image"]'), `control-room://library/${desk}/0`);
    const kept = await fetch(`${server.base}/library/${desk}/0`, { headers: { cookie: (await context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ') } });
    assert.equal(kept.status, 200);
    assert.deepEqual(Buffer.from(await kept.arrayBuffer()), DESK_PNG, 'the Library keeps the desk file as it was');
    const fromDesk = await compose(page, await page.inputValue('[data-testid="composer-model"]'), 'the storyboard comes alive');
    await watchStates(page, fromDesk, 'success');
    const check = await context.newPage();
    await check.goto(`${server.base}/tasks/${fromDesk}`);
    assert.match(await check.textContent('[data-testid="story-beats"]'), /sent to KIE as an upload of the Library's copy/);
    assert.deepEqual(errors, [], 'no console errors');
    await context.close();
  } finally {
    await server.stop();
  }
});

test('intake paused from panel 06 holds a new task, the strip says PAUSED, and Resume sends it', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.click('details:has([data-testid="pause-form"]) summary');
    await page.fill('[data-testid="pause-reason"]', 'grading pass');
    await page.click('[data-testid="pause-save"]');
    await page.waitForSelector('[data-testid="pauses"] .muted:has-text("Paused: the team\'s intake is held by")', { timeout: 10_000 });
    await page.waitForFunction(() => /PAUSED/.test(document.querySelector('[data-testid="strip-queue"]')?.textContent ?? ''), null, { timeout: 10_000 });

    const id = await compose(page, 'google/imagen4-fast', 'held at the door');
    // The listing says why a queued task waits (a live row joins it at the next read).
    await page.reload();
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    const reason = page.locator(`tr[data-task="${id}"] [data-testid="task-queue"]`);
    await reason.waitFor({ timeout: 10_000 });
    assert.match(await reason.textContent(), /Paused: the team's intake is held by .* \(grading pass\)/);
    // Two seconds of dispatch rounds: nothing leaves while paused.
    await page.waitForTimeout(2_000);
    assert.equal(await page.getAttribute(`tr[data-task="${id}"]`, 'data-state'), 'queued');

    await page.click('[data-testid="pause-resume"]');
    await page.waitForSelector('[data-testid="pauses"]', { state: 'detached', timeout: 10_000 });
    await watchStates(page, id, 'success');
    assert.doesNotMatch(await page.textContent('[data-testid="strip-queue"]'), /PAUSED/);
    assert.deepEqual(errors, [], 'no console errors');
    await page.screenshot({ path: join(artifacts, 'pause-resumed.png'), fullPage: true });
    await context.close();
  } finally {
    await server.stop();
  }
});

test('a batch of 20 from a CSV is previewed, admitted whole and followed to the end on panel 06', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.click('details:has([data-testid="batch-form"]) summary');
    await page.fill('[data-testid="batch-name"]', 'e2e-stills');
    await page.fill('[data-testid="batch-project"]', 'e2e');
    await page.fill('[data-testid="batch-model"]', 'google/imagen4-fast');
    await page.selectOption('[data-testid="batch-format"]', 'csv');
    const csv = ['prompt,seed', ...Array.from({ length: 20 }, (_, i) => `"frame ${i}, wide",${i}`)].join('\n');
    await page.fill('[data-testid="batch-rows"]', csv);
    await page.click('[data-testid="batch-preview"]');
    const preview = page.locator('[data-testid="batch-preview-text"]');
    await preview.waitFor({ timeout: 10_000 });
    assert.equal((await preview.textContent()).trim(), 'Batch e2e-stills: 20 tasks, estimated 80 credits ($0.40) together.');
    await page.click('[data-testid="batch-run"]');
    const admitted = page.locator('[data-testid="batch-admitted"]');
    await admitted.waitFor({ timeout: 10_000 });
    assert.match(await admitted.textContent(), /20 tasks queued, estimated 80 credits \(\$0\.40\)/);
    // Its progress, live on the panel: every task ends, all of them done.
    const bar = '[data-testid="batch"][data-batch="e2e-stills"] [data-testid="batch-progress"]';
    await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute('data-percent') === '100', bar, { timeout: 60_000 });
    assert.match(await page.textContent(bar), /20\/20 done · estimated 80 credits \(\$0\.40\)/);
    // The Monitor shows the batch's tasks, and what the listed page costs.
    await page.reload();
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    assert.match(await page.textContent('[data-testid="monitor-total"]'), /^\d+ credits \(\$\d+\.\d\d\)$/);
    assert.ok(await page.locator('[data-testid="batch-zip"]').first().isVisible(), 'its zip to download');
    assert.deepEqual(errors, [], 'no console errors');
    await page.screenshot({ path: join(artifacts, 'batch-done.png'), fullPage: true });
    await context.close();
  } finally {
    await server.stop();
  }
});

/** A WAV file of `bytes` bytes of 8-bit mono sound at 8 kHz (a person's recording on their desk). */
function wav(bytes) {
  const samples = bytes - 44;
  const out = Buffer.alloc(bytes);
  out.write('RIFF', 0); out.writeUInt32LE(36 + samples, 4); out.write('WAVEfmt ', 8);
  out.writeUInt32LE(16, 16); out.writeUInt16LE(1, 20); out.writeUInt16LE(1, 22);
  out.writeUInt32LE(8000, 24); out.writeUInt32LE(8000, 28); out.writeUInt16LE(1, 32); out.writeUInt16LE(8, 34);
  out.write('data', 36); out.writeUInt32LE(samples, 40);
  for (let i = 0; i < samples; i += 1) out[44 + i] = 128 + Math.round(60 * Math.sin((2 * Math.PI * 440 * i) / 8000));
  return out;
}

test('a file from the desk on a slow line shows how much has arrived, to its sender and to another console', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    const other = await openHydrated(browser, server.base + '/', undefined, VIEWER);
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    await other.page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    // The sender's line: 256 KiB a second up, so 1.5 MB takes about six seconds.
    const line = await context.newCDPSession(page);
    await line.send('Network.enable');
    await line.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 256 * 1024 });
    const file = wav(1_500_000);
    await page.click('[data-testid="desk-section"] summary');
    await page.fill('[data-testid="desk-upload"] input[name="project"]', 'e2e');
    await page.setInputFiles('[data-testid="desk-file"]', { name: 'room tone.wav', mimeType: 'audio/wav', buffer: file });
    // What the sender's page shows while the file goes is written down by the page itself (its
    // session storage outlives the navigation): DevTools holds every command to a page whose
    // navigation is under way, so nothing can ask it then.
    await page.evaluate(() => {
      const seen = [];
      const note = () => {
        const now = [document.querySelector('[data-testid="library-arriving"] div')?.textContent ?? null, document.querySelector('[data-testid="desk-upload"]')?.classList.contains('sending') ?? null];
        if (JSON.stringify(now) === JSON.stringify(seen[seen.length - 1])) return;
        seen.push(now);
        sessionStorage.setItem('seen', JSON.stringify(seen));
      };
      new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    const navigated = page.waitForURL((u) => /^cr_[0-9a-f]+\/0$/.test(u.searchParams.get('input') ?? ''), { timeout: 60_000 });
    await page.evaluate(() => {
      const form = document.querySelector('[data-testid="desk-upload"]');
      form.requestSubmit(form.querySelector('[data-testid="desk-submit"]'));
    });
    // Another console sees it on the file's row in the Task Monitor, moving.
    const progress = /^Arriving ([\d.]+ [KM]B) of 1\.5 MB \((\d+) %\)$/;
    const rows = [];
    for (let i = 0; i < 300; i += 1) {
      const shown = await other.page.evaluate(() => [...document.querySelectorAll('[data-testid="task-archive"]')].map((e) => e.textContent).find((t) => t.startsWith('Arriving')) ?? null);
      const m = shown?.match(progress);
      if (m && rows[rows.length - 1] !== m[2]) rows.push(m[2]);
      if (rows.length >= 2) break;
      await other.page.waitForTimeout(50);
    }
    assert.ok(rows.length >= 2 && Number(rows[1]) > Number(rows[0]), `the other console's row moves as the file comes in: ${rows.join(' → ')} %`);
    // All of it in: the sender's page moves on to the composer with it as the input.
    await navigated;
    const desk = new URL(page.url()).searchParams.get('input').split('/')[0];
    const kept = await fetch(`${server.base}/library/${desk}/0`, { headers: { cookie: (await context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ') } });
    assert.deepEqual(Buffer.from(await kept.arrayBuffer()), file, 'the Library keeps the file as it was sent');
    // The sender's page showed it in panel 07, reloaded live with the figure moving, its form
    // still saying it was sending through each reload.
    const seen = JSON.parse(await page.evaluate(() => sessionStorage.getItem('seen')));
    const figures = seen.filter(([line]) => line).map(([line, sending]) => {
      const m = line.match(/^room tone\.wav \(e2e, admin@e2e\.test\): Arriving [\d.]+ [KM]B of 1\.5 MB \((\d+) %\)$/);
      assert.ok(m, `panel 07's line: ${line}`);
      assert.equal(sending, true, `the form says it is sending beside ${line}`);
      return Number(m[1]);
    });
    assert.ok(figures.length >= 2 && figures.every((p, i) => i === 0 || p > figures[i - 1]), `the sender's panel 07 moved with the file: ${figures.join(' → ')} %`);
    await other.page.locator(`tr[data-task="${desk}"] [data-testid="task-archive"]:has-text("In Library")`).waitFor({ timeout: 10_000 });
    assert.deepEqual(errors, [], 'no console errors');
    assert.deepEqual(other.errors, [], 'no console errors on the other console');
    await other.context.close();
    await context.close();
  } finally {
    await server.stop();
  }
});
