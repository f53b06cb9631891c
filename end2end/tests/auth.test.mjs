// Teams in a real Chromium: an admin adds a producer in the Team panel; the producer signs in
// in a second browser context; each sees the other's task arrive live. A viewer sees no submit
// button, and a server function called directly as the viewer is refused. Nothing destructive
// happens on one click: a role needs its Save, an admin's demotion and a Library deletion ask
// first (with what they will do), and Cancel changes nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ADMIN, VIEWER, artifacts, launchBrowser, openHydrated, startServer } from './harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const PRODUCER = 'nina@e2e.test';
const PRODUCER_PASSWORD = 'nina has a long password';

/** Submits from the composer; returns the new task's id. */
async function compose(page, prompt) {
  await page.selectOption('[data-testid="composer-model"]', 'google/imagen4-fast');
  await page.fill('[data-testid="composer-project"]', 'team');
  await page.fill('[data-testid="composer-prompt"]', prompt);
  await page.click('[data-testid="composer-submit"]');
  await page.waitForSelector('[data-testid="submit-result"] code', { timeout: 10_000 });
  return (await page.textContent('[data-testid="submit-result"] code')).trim();
}

test('an admin adds a producer; each sees the other\'s task live; a viewer cannot submit', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const admin = await openHydrated(browser, server.base + '/');
    assert.equal(await admin.page.getAttribute('[data-testid="user-bar"]', 'data-role'), 'admin');
    await admin.page.fill('[data-testid="team-email"]', PRODUCER);
    await admin.page.fill('[data-testid="team-name"]', 'Nina');
    await admin.page.selectOption('[data-testid="team-role"]', 'producer');
    await admin.page.fill('[data-testid="team-password"]', PRODUCER_PASSWORD);
    await admin.page.click('[data-testid="team-add-submit"]');
    assert.match(await admin.page.textContent('[data-testid="team-result"]', { timeout: 10_000 }), /Added nina@e2e\.test as producer/);
    await admin.page.waitForSelector(`[data-testid="team-list"] tr[data-user="${PRODUCER}"]`);

    const producer = await openHydrated(browser, server.base + '/', undefined, PRODUCER, PRODUCER_PASSWORD);
    assert.equal(await producer.page.getAttribute('[data-testid="user-bar"]', 'data-role'), 'producer');
    assert.equal(await producer.page.$('[data-panel="12"]'), null, 'the Team panel is for admins');
    for (const p of [admin.page, producer.page]) {
      await p.waitForSelector('[data-testid="live-badge"]:has-text("Live")', { timeout: 10_000 });
    }

    const byProducer = await compose(producer.page, 'the producer\'s shot');
    const row = `tr[data-task="${byProducer}"]`;
    await admin.page.waitForSelector(row, { timeout: 10_000 });
    assert.match(await admin.page.textContent(row), /nina@e2e\.test/, 'the admin sees who submitted it');
    const byAdmin = await compose(admin.page, 'the admin\'s shot');
    await producer.page.waitForSelector(`tr[data-task="${byAdmin}"]`, { timeout: 10_000 });
    assert.match(await producer.page.textContent(`tr[data-task="${byAdmin}"]`), /admin@e2e\.test/);
    // Both follow the producer's task to its end without a reload.
    for (const p of [admin.page, producer.page]) {
      await p.waitForSelector(`${row}[data-state="success"]`, { timeout: 40_000 });
    }
    // The admin's audit log recorded the new producer and the sign-ins.
    await admin.page.reload();
    await admin.page.waitForSelector('body[data-hydrated="true"]');
    const audit = await admin.page.textContent('[data-testid="audit-list"]');
    assert.match(audit, /user added/);
    assert.match(audit, /nina@e2e\.test/);
    // Its times as every panel shows them: how long ago, the exact UTC time on hover; and the
    // console has told the server the viewer's time zone for older ones.
    const when = admin.page.locator('[data-testid="audit-list"] time').first();
    assert.match(await when.textContent(), /^(just now|\d+ min ago)$/);
    assert.match(await when.getAttribute('title'), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    assert.match(await admin.page.evaluate(() => document.cookie), /(^|; )tz=-?\d+(;|$)/);
    await admin.page.screenshot({ path: join(artifacts, 'team-admin.png'), fullPage: true });

    const viewer = await openHydrated(browser, server.base + '/', undefined, VIEWER);
    assert.equal(await viewer.page.$('[data-testid="composer-submit"]'), null, 'no submit button for a viewer');
    assert.match(await viewer.page.textContent('[data-testid="composer-read-only"]'), /viewers see every task but cannot submit/);
    await viewer.page.waitForSelector(`tr[data-task="${byProducer}"]`, { timeout: 10_000 });
    // Calling the server function directly, with the viewer's own session, is refused.
    const refused = await viewer.page.evaluate(async () => {
      const r = await fetch('/api/submit_task', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'model=google%2Fimagen4-fast&project=team&prompt=sneaky',
      });
      return { status: r.status, text: await r.text() };
    });
    assert.equal(refused.status, 403);
    assert.match(refused.text, /needs the producer role/);
    const tasks = await viewer.page.evaluate(async () => (await fetch('/api/list_tasks', {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'limit=100',
    })).json());
    assert.equal(tasks.rows.filter((r) => r.input_summary?.includes?.('sneaky')).length, 0);
    assert.equal(tasks.rows.length, 2, 'nothing was added by the refused call');

    for (const s of [admin, producer, viewer]) {
      assert.deepEqual(s.errors.filter((e) => !/403|Forbidden/.test(e)), [], 'no console errors');
      await s.context.close();
    }
  } finally {
    await server.stop();
  }
});

test('nothing destructive on one click: a role changes with its Save, an admin\'s demotion and the Library\'s delete ask first, and Cancel changes nothing', async () => {
  const server = await startServer({}, ['--simulate']);
  try {
    const { context, page, errors } = await openHydrated(browser, server.base + '/');
    // A copy in the Library, in project team.
    const id = await compose(page, 'a still to keep');
    await page.waitForSelector(`tr[data-task="${id}"] [data-testid="task-archive"]:has-text("In Library")`, { timeout: 40_000 });

    // A role picked is not saved until its Save is pressed.
    const makerRole = '#people tr[data-user="maker@e2e.test"] [data-testid="user-role-select"]';
    await page.selectOption(makerRole, 'viewer');
    await page.waitForTimeout(1500);
    const roleOnServer = async (email) => page.evaluate(async (email) => {
      const html = await (await fetch('/panel/people')).text();
      const row = new DOMParser().parseFromString(html, 'text/html').querySelector(`tr[data-user="${email}"] option[selected]`);
      return row?.value;
    }, email);
    assert.equal(await roleOnServer('maker@e2e.test'), 'producer', 'a pick alone changes nothing');
    await page.selectOption(makerRole, 'viewer');
    await page.click('#people tr[data-user="maker@e2e.test"] [data-testid="user-role-save"]');
    await page.waitForSelector('#people [data-testid="team-result"]:has-text("maker@e2e.test is now viewer.")', { timeout: 10_000 });
    assert.equal(await roleOnServer('maker@e2e.test'), 'viewer');

    // Demoting the (only) admin asks first, and Cancel keeps the role.
    const adminRole = `#people tr[data-user="${ADMIN}"] [data-testid="user-role-select"]`;
    await page.selectOption(adminRole, 'producer');
    await page.click(`#people tr[data-user="${ADMIN}"] [data-testid="user-role-save"]`);
    await page.waitForSelector(`#people [data-testid="confirm-question"]:has-text("Demote ${ADMIN} from admin to producer?")`, { timeout: 10_000 });
    await page.click('#people [data-testid="confirm-cancel"]');
    await page.waitForSelector('#people [data-testid="cancelled"]', { timeout: 10_000 });
    assert.equal(await roleOnServer(ADMIN), 'admin', 'cancelled: still an admin');

    // Deleting a project's copies says how many files and bytes first; Cancel deletes nothing.
    await page.fill('[data-testid="library-delete"] input[name="project"]', 'team');
    await page.click('[data-testid="library-delete"] button[value="review"]');
    const question = await page.waitForSelector('#retention [data-testid="confirm-question"]', { timeout: 10_000 });
    assert.match(await question.textContent(), /^Delete 1 file, [\d.]+ [KM]?B, of project team\?/);
    await page.click('#retention [data-testid="confirm-cancel"]');
    await page.waitForSelector('#retention [data-testid="cancelled"]', { timeout: 10_000 });
    assert.match(await page.textContent('[data-testid="library-archived"]'), /^1 assets/, 'the copy is still there');
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await server.stop();
  }
});
