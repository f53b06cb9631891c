// Starts a real control-room server on a free loopback port, and a real
// Chromium (Debian's /usr/bin/chromium) through playwright-core. Never downloads a browser.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, '..', '..');
export const artifacts = join(root, 'end2end', 'artifacts');
mkdirSync(artifacts, { recursive: true });

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

/** The people every test server starts with (added on the command line, as an operator would). */
export const ADMIN = 'admin@e2e.test';
export const VIEWER = 'viewer@e2e.test';
export const MAKER = 'maker@e2e.test';
export const PASSWORD = 'correct horse battery staple';
// The release binary by default; the test command points CONTROL_ROOM_BIN_DIR at the one its
// test build made (the same code, not compiled a second time). Either serves the release
// build's site (WASM, JS, CSS) from target/site, with the hash file copied beside it.
const bin = join(resolve(root, process.env.CONTROL_ROOM_BIN_DIR || join('target', 'release')), 'control-room');

/** `control-room user add EMAIL --role ROLE` against `dataDir`, the password on stdin. */
function addUser(dataDir, email, role) {
  const r = spawnSync(bin, ['user', 'add', email, '--role', role], {
    env: { PATH: process.env.PATH, DATA_DIR: dataDir }, input: `${PASSWORD}\n`, encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`user add ${email}: ${r.stderr}`);
}

/** Starts the server with `env` added (on `port` if given); resolves once /healthz answers. */
export async function startServer(env = {}, args = [], port = undefined) {
  port ??= await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'cr-e2e-'));
  addUser(dataDir, ADMIN, 'admin');
  addUser(dataDir, VIEWER, 'viewer');
  addUser(dataDir, MAKER, 'producer');
  const logs = [];
  const child = spawn(bin, args, {
    cwd: root,
    env: {
      PATH: process.env.PATH,
      RUST_LOG: 'info',
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: join(root, 'target', 'site'),
      DATA_DIR: dataDir,
      // Never reach outside this machine: port 9 (discard) on loopback is closed.
      KIE_BASE_URL: 'http://127.0.0.1:9',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => logs.push(d.toString()));
  child.stderr.on('data', (d) => logs.push(d.toString()));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`control-room exited early:\n${logs.join('')}`);
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`control-room did not answer within 20 s:\n${logs.join('')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    logs,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** Signs in on the sign-in page `url` redirects to, as a person would; lands back on `url`. */
export async function signIn(page, url, email, password = PASSWORD) {
  await page.goto(url);
  await page.waitForSelector('[data-testid="signin-form"]');
  await page.fill('[data-testid="signin-email"]', email);
  await page.fill('[data-testid="signin-password"]', password);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/signin'), { timeout: 10_000 }), page.click('[data-testid="signin-submit"]')]);
}

/**
 * Opens `url` signed in as `email` (the admin unless told) in a new browser context, and
 * waits for the WASM bundle to hydrate the page; collects console errors.
 */
export async function openHydrated(browser, url, viewport = { width: 1280, height: 900 }, email = ADMIN, password = PASSWORD) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await signIn(page, url, email, password);
  await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
  return { context, page, errors };
}

/** A session cookie for `email`, signed in over HTTP (so the browser's cache stays cold). */
export async function sessionCookie(base, email = ADMIN) {
  const r = await fetch(`${base}/auth/signin`, {
    method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
    body: new URLSearchParams({ email, password: PASSWORD, next: '/' }).toString(),
  });
  const cookie = (r.headers.getSetCookie?.() ?? [r.headers.get('set-cookie')]).find((c) => c?.startsWith('cr_session='));
  if (!cookie) throw new Error(`sign-in refused (${r.status})`);
  const [name, value] = cookie.split(';')[0].split('=');
  return { name, value, url: base };
}
