// KIE's model-specific families from the console, in a real Chromium in --simulate mode: a
// Veo task and a Suno task from the composer with their own inputs, played in the Task
// Monitor; the song's track from the Library made the input of a cover; a task still queued here cancelled from the console; an ended task re-run with an
// edited prompt, linked to its original; a Midjourney grid's second image upscaled from its story,
// linked to the grid.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openHydrated, startServer } from './harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** Fills the composer for `model` (its own fields via `fields`) and submits; returns the id. */
async function compose(page, model, prompt, fields = async () => {}) {
  await page.selectOption('[data-testid="composer-model"]', model);
  await page.fill('[data-testid="composer-project"]', 'e2e');
  await fields();
  await page.fill('[data-testid="composer-prompt"]', prompt);
  const before = await page.locator('[data-testid="submit-result"] code').textContent().catch(() => null);
  await page.click('[data-testid="composer-submit"]');
  await page.waitForFunction((prev) => {
    const c = document.querySelector('[data-testid="submit-result"] code');
    const e = document.querySelector('[data-testid="submit-error"]');
    if (e) throw new Error(e.textContent);
    return c && c.textContent !== prev;
  }, before, { timeout: 10_000 });
  return (await page.textContent('[data-testid="submit-result"] code')).trim();
}

async function ended(page, id, state = 'success') {
  await page.waitForSelector(`tr[data-task="${id}"][data-state="${state}"]`, { timeout: 40_000 });
}

/** Plays a row's media element (muted) and returns how far it got. */
async function play(page, selector) {
  await page.waitForSelector(selector, { timeout: 15_000 });
  return page.$eval(selector, async (m) => {
    m.muted = true;
    m.preload = 'auto';
    if (m.readyState < 1) {
      m.load();
      await new Promise((r, j) => { m.onloadedmetadata = r; m.onerror = () => j(new Error('media error')); setTimeout(r, 5000); });
    }
    await m.play();
    await new Promise((r) => setTimeout(r, 400));
    return { time: m.currentTime, src: m.currentSrc };
  });
}

test('a Veo task and a Suno task from the composer play in the Monitor; a re-run with edits links to its original', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });

    // Veo: its own inputs (aspect ratio, generation type) are offered and sent.
    const veo = await compose(page, 'veo3', 'a lighthouse at dusk, waves', async () => {
      await page.selectOption('[data-testid="composer"] select[data-field="aspectRatio"]', '9:16');
    });
    assert.equal(await page.locator('[data-testid="composer"] select[data-field="generationType"]').count(), 1);
    await ended(page, veo);
    const video = await play(page, `tr[data-task="${veo}"] video.thumb`);
    assert.ok(video.time > 0, `the Veo video played: ${JSON.stringify(video)}`);

    // Suno: custom mode off, instrumental on; its first song plays.
    const suno = await compose(page, 'suno/V4', 'a calm ambient bed for a trailer', async () => {
      await page.check('[data-testid="composer"] input[data-field="instrumental"]');
    });
    await ended(page, suno);
    const audio = await play(page, `tr[data-task="${suno}"] audio`);
    assert.ok(audio.time > 0, `the Suno song played: ${JSON.stringify(audio)}`);

    // Its first track, from the Library (panel 07), is the input of a cover: the composer opens
    // on the first model whose URL field takes audio, with the track in that field.
    await page.waitForSelector(`tr[data-task="${suno}"] [data-testid="task-archive"]:has-text("In Library")`, { timeout: 20_000 });
    const use = page.locator(`[data-panel="07"] a[data-testid="library-use"][href*="input=${suno}/0&media=audio"]`);
    await use.waitFor({ timeout: 10_000 });
    await Promise.all([page.waitForURL((u) => u.searchParams.get('input') === `${suno}/0` && u.searchParams.get('media') === 'audio'), use.click()]);
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
    assert.equal(await page.inputValue('[data-testid="composer-model"]'), 'suno/cover');
    assert.equal(await page.inputValue('[data-testid="composer"] input[data-field="uploadUrl"]'), `control-room://library/${suno}/0`);
    // A cover's price is unknown: a per-job cap is what it holds.
    const rule = await page.evaluate(async () => (await fetch('/api/set_cost_rule', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'per_job=1' })).status);
    assert.equal(rule, 200);
    // Submitted as opened (choosing the model again would clear its fields).
    await page.fill('[data-testid="composer-project"]', 'e2e');
    await page.fill('[data-testid="composer-prompt"]', 'the same tune as a sea shanty');
    await page.click('[data-testid="composer-submit"]');
    await page.waitForSelector('[data-testid="submit-result"] code', { timeout: 10_000 });
    const cover = (await page.textContent('[data-testid="submit-result"] code')).trim();
    await ended(page, cover);
    const covered = await context.newPage();
    await covered.goto(`${server.base}/tasks/${cover}`);
    assert.match(await covered.textContent('[data-testid="story-beats"]'), new RegExp(`made from ${suno} result 0 in the Library`));
    await covered.close();

    // Suno without a style in custom mode is refused before anything is sent, with why.
    await page.selectOption('[data-testid="composer-model"]', 'suno/V4');
    await page.check('[data-testid="composer"] input[data-field="customMode"]');
    await page.fill('[data-testid="composer-prompt"]', 'lyrics');
    await page.click('[data-testid="composer-submit"]');
    await page.waitForSelector('[data-testid="submit-error"]:has-text("style and a title")', { timeout: 10_000 });

    // Re-run the Veo task with an edited prompt: the composer opens with its inputs.
    await page.click(`tr[data-task="${veo}"] [data-testid="rerun"]`);
    await page.waitForSelector(`[data-testid="composer-rerun"]:has-text("${veo}")`, { timeout: 10_000 });
    assert.equal(await page.inputValue('[data-testid="composer-model"]'), 'veo3');
    assert.equal(await page.inputValue('[data-testid="composer-prompt"]'), 'a lighthouse at dusk, waves');
    assert.equal(await page.inputValue('[data-testid="composer"] select[data-field="aspectRatio"]'), '9:16', 'its fields are filled too');
    await page.fill('[data-testid="composer-prompt"]', 'a lighthouse at dawn, calm sea');
    // The last outcome shown was the refusal above: wait for a submission's.
    await page.click('[data-testid="composer-submit"]');
    await page.waitForSelector('[data-testid="submit-result"] code', { timeout: 10_000 });
    const rerun = (await page.textContent('[data-testid="submit-result"] code')).trim();
    await page.waitForSelector(`tr[data-task="${rerun}"] [data-testid="rerun-of"]:has-text("${veo}")`, { timeout: 10_000 });
    assert.match(await page.textContent(`tr[data-task="${rerun}"]`), /at dawn/);
    // The one refusal above (422) is the browser's only complaint.
    assert.deepEqual(errors.filter((e) => !/status of 422/.test(e)), [], 'no other console errors');
    await context.close();
  } finally {
    await server.stop();
  }
});

test('a task still queued here is cancelled from the console', async () => {
  // One new task a minute: the second waits here, in the queue.
  const server = await startServer({ RATE_GUARD: '1/60s' }, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    await compose(page, 'google/imagen4-fast', 'sent at once');
    const queued = await compose(page, 'google/imagen4-fast', 'waits for the rate guard');
    await page.waitForSelector(`tr[data-task="${queued}"][data-state="queued"] [data-testid="cancel"]`, { timeout: 10_000 });
    await page.click(`tr[data-task="${queued}"] [data-testid="cancel"]`);
    await page.waitForSelector(`tr[data-task="${queued}"][data-state="fail"]`, { timeout: 10_000 });
    assert.match(await page.textContent(`tr[data-task="${queued}"]`), /[Cc]ancel/);
    assert.deepEqual(errors, [], 'no console errors');
    await context.close();
  } finally {
    await server.stop();
  }
});

test("a Midjourney grid's second image is upscaled from its story, a new task linked to the grid", async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    await page.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    // Midjourney's price is unknown: a per-job cap is what its tasks hold.
    const rule = await page.evaluate(async () => (await fetch('/api/set_cost_rule', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'per_job=1' })).status);
    assert.equal(rule, 200);
    const grid = await compose(page, 'midjourney/text-to-image', 'four lighthouses in a storm');
    await ended(page, grid);
    // Its story, beside the Monitor, offers an upscale and a variation of each of its four images.
    await page.click(`tr[data-task="${grid}"] [data-testid="story-open"]`);
    await page.waitForSelector('#story:not([hidden]) [data-testid="follow-ups"]', { timeout: 10_000 });
    const offered = await page.locator('#story [data-testid="follow-up"]').allTextContents();
    assert.deepEqual(offered.map((t) => t.trim()), ['Upscale 1', 'Upscale 2', 'Upscale 3', 'Upscale 4', 'Vary 1', 'Vary 2', 'Vary 3', 'Vary 4']);
    let navigations = 0;
    page.on('framenavigated', () => { navigations += 1; });
    await page.click('#story [data-testid="follow-up"]:has-text("Upscale 2")');
    await page.waitForSelector('#story [data-testid="follow-up-result"] code', { timeout: 10_000 });
    const upscale = (await page.textContent('#story [data-testid="follow-up-task"] code')).trim();
    assert.match(upscale, /^cr_[0-9a-f]+$/);
    assert.equal(navigations, 0, 'started in place, no reload');
    // The Monitor follows it live to its one image.
    await ended(page, upscale);
    assert.equal(await page.textContent(`tr[data-task="${upscale}"] td:nth-child(2)`), 'midjourney/upscale');
    // Its own story names its parent and result, and how KIE was told which task it acts on.
    const story = await context.newPage();
    await story.goto(`${server.base}/tasks/${upscale}`);
    assert.equal((await story.textContent('[data-testid="story-follows"]')).trim(), `${grid}, result 2`);
    const beats = await story.textContent('[data-testid="story-beats"]');
    assert.match(beats, new RegExp(`a follow-up on ${grid} result 1`));
    assert.match(beats, new RegExp(`input\\.taskId \\(${grid}\\) sent to KIE as its id there, \\S+`));
    assert.equal(await story.locator('[data-testid="follow-ups"]').count(), 0, 'an upscale offers no follow-ups of its own');
    assert.match(await story.textContent('[data-testid="story-input"]'), /"imageIndex": 1/);
    await story.close();
    assert.deepEqual(errors, [], 'no console errors');
    await context.close();
  } finally {
    await server.stop();
  }
});
