// A classroom in a real browser (issue 17, "Tests"): Debian's Chromium driven by playwright-core
// against a running `invoke serve --class ...`. Two students and the instructor, each in a browser
// context of their own (their own cookie), at the same time:
//
//   student A  opens their personal link, starts exercise2 by hand, types the seed's commands into the
//              browser terminals (their own variant values, read from the steps), watches the keepalive
//              probes arrive in the live view, finishes, and every check passes;
//   instructor watches the class table live, opens A's lab read-only, sees A's typing in its terminal,
//              types there to no effect, sees the verdict, and downloads the class CSV;
//   student B  does the same by hand but with A's numbers, and gets failing keepalive checks whose hint
//              names B's own value and what B set.
//
// Configured by the environment:
//   TCPLAB_BASE              http://127.0.0.1:PORT
//   TCPLAB_A_TOKEN, TCPLAB_B_TOKEN, TCPLAB_INSTRUCTOR_TOKEN   personal tokens (or TCPLAB_*_LINK: the whole /join/ link)
//   TCPLAB_A_NAME, TCPLAB_B_NAME                              the students' names (default ann, bob)
//   TCPLAB_A_VARIANT, TCPLAB_B_VARIANT                        their exercise2 values as JSON, e.g. {"keepidle": 2, "keepintvl": 1}
//   TCPLAB_SHOTS             where the screenshots go (created)
//   TCPLAB_CHROMIUM          the browser (default /usr/bin/chromium)
// Exits 0 when every expectation held; otherwise prints each failure and exits 1.
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

function need(name) {
  const v = process.env[name];
  if (!v) fail(`${name} is not set`);
  return v;
}

function fail(message) {
  console.error(`FAILED: ${message}`);
  process.exit(1);
}

const BASE = need('TCPLAB_BASE').replace(/\/$/, '');
const link = (who) => process.env[`TCPLAB_${who}_LINK`] || `${BASE}/join/${need(`TCPLAB_${who}_TOKEN`)}`;
const SHOTS = need('TCPLAB_SHOTS');
mkdirSync(SHOTS, { recursive: true });
const A = { who: 'A', name: process.env.TCPLAB_A_NAME || 'ann', link: link('A'), variant: JSON.parse(need('TCPLAB_A_VARIANT')) };
const B = { who: 'B', name: process.env.TCPLAB_B_NAME || 'bob', link: link('B'), variant: JSON.parse(need('TCPLAB_B_VARIANT')) };
const INSTRUCTOR = { who: 'instructor', name: 'instructor', link: link('INSTRUCTOR') };
const EXERCISE = 'exercise2';
const MARKER = 'INSTRUCTOR-TYPED-THIS-9f3c';
const T0 = Date.now();

class Expectation extends Error {}

function expect(cond, what) {
  if (!cond) throw new Expectation(what);
  log('-', `ok: ${what}`);
}

function log(who, text) {
  console.log(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(6)} s] ${who.padEnd(10)} ${text}`);
}

// A promise another actor resolves: how the three of them wait for each other.
function signal() {
  let resolve;
  const p = new Promise((r) => { resolve = r; });
  p.resolve = resolve;
  return p;
}

async function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Expectation(`timed out after ${ms / 1000} s: ${what}`)), ms); });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const problems = [];
const browser = await chromium.launch({
  executablePath: process.env.TCPLAB_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

const pages = []; // [who, page], for screenshots when something fails

async function newPage(context, who) {
  const page = await context.newPage();
  pages.push([who, page]);
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    // An event stream cut when a page is left or closed, or when its lab is over, is not a fault.
    if (/\/stream\b|EventSource|ERR_ABORTED|net::ERR_INCOMPLETE_CHUNKED_ENCODING/.test(text)) return;
    problems.push(`${who}: console error on ${page.url()}: ${text}`);
  });
  page.on('pageerror', (err) => problems.push(`${who}: uncaught error on ${page.url()}: ${err.message}`));
  return page;
}

async function person(actor) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
  const page = await newPage(context, actor.who);
  await page.goto(actor.link);
  return { context, page };
}

const term = (host) => `.terminal[data-host=${host}]`;

// What a terminal shows (xterm's DOM rows), with non-breaking spaces as spaces.
async function screenText(page, host) {
  const rows = page.locator(`${term(host)} .xterm-rows`);
  if (!(await rows.count())) return '';
  return (await rows.first().textContent()).replace(/\u00a0/g, ' ');
}

async function waitForScreen(page, host, needle, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = await screenText(page, host);
    if (text.includes(needle)) return text;
    if (Date.now() > deadline) throw new Expectation(`${what}: "${needle}" not on the ${host} terminal after ${ms / 1000} s; it shows:\n${text.trim()}`);
    await page.waitForTimeout(200);
  }
}

// As a person does: click into the terminal, type the line, press Enter.
async function typeLine(page, host, line) {
  await page.locator(`${term(host)} .term-screen`).click();
  await page.keyboard.type(line, { delay: 4 });
  await page.keyboard.press('Enter');
}

async function stepCommand(page, n) {
  return (await page.locator(`#steps li[data-step="${n}"] pre code`).textContent()).trim();
}

async function waitStepDone(page, n, ms) {
  await page.waitForSelector(`#steps li[data-step="${n}"].done`, { timeout: ms });
}

// Records whether the live view ever drew an expectation band (data-expect non-empty), and the most
// keepalive probes it drew at once.
async function watchWire(page) {
  await page.evaluate(() => {
    const wire = document.getElementById('wire');
    window.__expectSeen = [];
    const see = () => {
      const e = wire.dataset.expect;
      if (e && !window.__expectSeen.includes(e)) window.__expectSeen.push(e);
    };
    see();
    new MutationObserver(see).observe(wire, { attributes: true, attributeFilter: ['data-expect'] });
  });
}

const shot = async (page, name, full = false) => {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: full });
  log('-', `screenshot ${file}`);
};

// --- a student doing exercise2 by hand ------------------------------------------------------------

async function student(actor, opts) {
  const { page } = await person(actor);
  const who = actor.who;
  // The catalogue, with the student's own values.
  await page.waitForSelector(`.exercise[data-exercise=${EXERCISE}]`, { timeout: 20000 });
  const card = page.locator(`.exercise[data-exercise=${EXERCISE}]`);
  const variantText = (await card.locator('.variant').textContent()) || '';
  for (const [k, v] of Object.entries(actor.variant)) {
    expect(variantText.includes(`${k}=${v}`), `${who}: the catalogue shows ${actor.name}'s own ${k}=${v} (it shows "${variantText.trim()}")`);
  }
  if (opts.catalogueShot) await shot(page, opts.catalogueShot);
  await Promise.all([page.waitForURL('**/labs/*', { timeout: 20000 }), card.locator('button[data-mode=hands-on]').click()]);
  const labId = decodeURIComponent(new URL(page.url()).pathname.split('/')[2]);
  log(who, `started lab ${labId}`);
  actor.lab = labId;
  opts.started?.resolve(labId);

  await page.waitForSelector('#state[data-state=running]', { timeout: 120000 });
  log(who, 'running');
  await page.waitForSelector(`${term('source')}[data-status=connected]`, { timeout: 20000 });
  await page.waitForSelector(`${term('dest')}[data-status=connected]`, { timeout: 20000 });
  await page.waitForSelector('#wire-block:not([hidden])', { timeout: 20000 }).catch(() => {});
  await watchWire(page);

  // The steps carry this student's own values.
  expect(await page.locator('#steps li').count() === 5, `${who}: five steps`);
  const client = await stepCommand(page, 3);
  for (const [k, v] of Object.entries(actor.variant)) {
    expect(new RegExp(`--${k} ${v}(\\s|$)`).test(client), `${who}: step 3's client command carries ${k} ${v}: ${client}`);
  }
  const server = await stepCommand(page, 2);
  const drop = await stepCommand(page, 4);
  expect(/python3 server\.py/.test(server), `${who}: step 2 starts the server: ${server}`);
  expect(/iptables .*DROP/.test(drop), `${who}: step 4 drops the port: ${drop}`);
  const port = (server.match(/--port (\d+)/) || [])[1];

  // A prompt on each terminal before typing.
  for (const host of ['source', 'dest']) {
    const deadline = Date.now() + 20000;
    while (!(await screenText(page, host)).trim()) {
      if (Date.now() > deadline) throw new Expectation(`${who}: no prompt on ${host} within 20 s`);
      await page.waitForTimeout(200);
    }
  }
  if (opts.beforeTyping) await opts.beforeTyping;

  // Step 1: the seed's capture on source, quiet, in the background.
  await typeLine(page, 'source', `tcpdump -i eth0 -nn -w source.pcap 'tcp port ${port}' &`);
  opts.typedCapture?.resolve();
  await waitStepDone(page, 1, 20000);
  log(who, 'step 1 done (capturing)');
  // tcpdump's "listening on" lands after the prompt: Enter, for a clean one, as a person does.
  await waitForScreen(page, 'source', 'listening on eth0', 10000, `${who}: tcpdump started`);
  await page.keyboard.press('Enter');
  // Step 2: the server on dest, in the background of its shell (it prints, and the shell stays free).
  await typeLine(page, 'dest', `${server} &`);
  await waitStepDone(page, 2, 20000);
  log(who, 'step 2 done (listening)');
  // Step 3: the client on source, in the foreground: it waits in recv() until the kernel gives up.
  const typed = opts.client ? opts.client(client) : client;
  await typeLine(page, 'source', typed);
  await waitStepDone(page, 3, 20000);
  log(who, `step 3 done (exchange): typed ${typed}`);
  // The long line wrapped where the browser's terminal wraps it: the shell knows the terminal's width.
  await waitForScreen(page, 'source', typed, 5000, `${who}: the client command, whole, on the source terminal`);
  // Step 4: after the first exchange (the server said so, after the prompt: Enter for a clean one), the drop on dest.
  await waitForScreen(page, 'dest', 'now keeping the connection open', 10000, `${who}: the server answered`);
  await page.locator(`${term('dest')} .term-screen`).click();
  await page.keyboard.press('Enter');
  await typeLine(page, 'dest', drop);
  await waitStepDone(page, 4, 20000);
  log(who, 'step 4 done (dropped)');

  // The probes as they arrive.
  await page.waitForSelector('#wire circle.seg[data-kind=keepalive]', { timeout: 30000 });
  let segments = Number(await page.locator('#wire').getAttribute('data-segments'));
  const firstCount = segments;
  await page.waitForFunction((n) => Number(document.getElementById('wire').dataset.segments) > n, firstCount, { timeout: 20000 });
  segments = Number(await page.locator('#wire').getAttribute('data-segments'));
  expect(segments > firstCount, `${who}: the live view grows as probes arrive (${firstCount} → ${segments} segments)`);
  await page.locator('#wire-block').scrollIntoViewIfNeeded();
  if (opts.probesShot) await shot(page, opts.probesShot, true);
  // The client gives up: its RST on the wire, the last step done.
  await page.waitForSelector('#wire [data-kind=rst]', { timeout: 60000 });
  await waitStepDone(page, 5, 20000);
  log(who, 'step 5 done (reset)');
  const probes = await page.locator('#wire circle.seg[data-kind=keepalive]').count();
  expect(probes >= 2, `${who}: at least two keepalive probes drawn (${probes})`);
  const expectSeen = await page.evaluate(() => window.__expectSeen);
  expect(expectSeen.length > 0, `${who}: the kernel model's expected next event was drawn at some point (${JSON.stringify(expectSeen)})`);
  opts.beforeFinish && await opts.beforeFinish(page);

  await page.locator('#finish').click();
  await page.waitForSelector('#state[data-state=done]', { timeout: 120000 });
  await page.waitForSelector('#verdict:not([hidden]) tbody tr[data-check]', { timeout: 20000 });
  log(who, 'judged');
  const checks = await page.locator('#verdict tbody tr[data-check]').evaluateAll((rows) => rows.map((r) => ({
    name: r.dataset.check, pass: r.classList.contains('pass'), fail: r.classList.contains('fail'),
    hint: (r.querySelector('.hint')?.textContent || '').trim(), observed: (r.querySelector('.observed')?.textContent || '').trim(),
  })));
  expect(await page.locator('#files a').count() > 0, `${who}: files to download`);
  await page.locator('#result').scrollIntoViewIfNeeded();
  await page.waitForTimeout(700); // the page scrolls smoothly to the verdict
  return { page, checks };
}

// --- the three of them ----------------------------------------------------------------------------

const aStarted = signal();
const instructorWatching = signal();
const aTypedCapture = signal();
const markerTyped = signal();
const aJudged = signal();
const bJudged = signal();

async function studentA() {
  const { page, checks } = await student(A, {
    catalogueShot: 'a-catalogue',
    started: aStarted,
    // A looks up only once the instructor is watching (or after 60 s without them).
    beforeTyping: within(instructorWatching, 60000, 'the instructor opening A\'s lab').catch((e) => { problems.push(e.message); }),
    typedCapture: aTypedCapture,
    probesShot: 'a-lab-probes',
    beforeFinish: async (p) => {
      await within(markerTyped, 60000, 'the instructor typing into the read-only terminal');
      await p.waitForTimeout(1000);
      for (const host of ['source', 'dest']) {
        const text = await screenText(p, host);
        expect(!text.includes(MARKER), `A: what the instructor typed never reached A's ${host} terminal`);
      }
    },
  });
  for (const c of checks) expect(c.pass, `A: check ${c.name} passes (${c.observed}${c.hint ? `; hint: ${c.hint}` : ''})`);
  expect(checks.length >= 3, `A: at least three checks (${checks.map((c) => c.name).join(', ')})`);
  expect((await page.locator('#verdict-summary').textContent()).startsWith('PASSED'), 'A: the verdict says PASSED');
  await shot(page, 'a-lab-verdict');
  await shot(page, 'a-lab-verdict-full', true);
  aJudged.resolve();
}

async function studentB() {
  const ak = A.variant.keepidle, bk = B.variant.keepidle;
  const { page, checks } = await student(B, {
    // B types A's numbers: B's own client command with A's keepalive values in it.
    client: (own) => Object.entries(A.variant).reduce((cmd, [k, v]) => cmd.replace(new RegExp(`--${k} \\S+`), `--${k} ${v}`), own),
    probesShot: 'b-lab-probes',
  });
  const failed = checks.filter((c) => c.fail);
  expect(failed.length > 0, `B: some checks fail (${checks.map((c) => `${c.name}:${c.pass ? 'pass' : 'fail'}`).join(', ')})`);
  expect(failed.some((c) => c.name.startsWith('keepalive')), `B: a keepalive check fails (${failed.map((c) => c.name).join(', ')})`);
  expect(checks.find((c) => c.name === 'connection_established')?.pass, 'B: connection_established still passes');
  for (const c of failed) {
    expect(c.hint.includes(`keepidle=${bk}`), `B: the hint of failing ${c.name} names B's own keepidle=${bk}: "${c.hint}"`);
    expect(new RegExp(`set ${ak}\\b`).test(c.hint), `B: the hint of failing ${c.name} says what B set (${ak}): "${c.hint}"`);
  }
  expect((await page.locator('#verdict-summary').textContent()).startsWith('FAILED'), 'B: the verdict says FAILED');
  await shot(page, 'b-lab-verdict');
  await shot(page, 'b-lab-verdict-full', true);
  bJudged.resolve();
}

async function instructor() {
  const { context, page: table } = await person(INSTRUCTOR);
  await table.waitForSelector('#class', { timeout: 20000 });
  const labId = await within(aStarted, 120000, 'A starting a lab');
  const row = table.locator(`tr[data-lab="${labId}"]`);
  await row.waitFor({ timeout: 20000 });
  expect((await row.locator('td.col-student').textContent()) === A.name, `instructor: A's lab ${labId} appears live in the table`);

  // Opened from the table (a second tab: the table stays live), read-only.
  const href = await row.locator('td.col-open a').getAttribute('href');
  const watch = await newPage(context, 'instructor');
  await watch.goto(new URL(href, BASE).href);
  await watch.waitForSelector('#state[data-state=running]', { timeout: 120000 });
  await watch.waitForSelector(`${term('source')}[data-status=connected]`, { timeout: 20000 });
  expect(await watch.locator(`${term('source')} .badge`).textContent() === 'read-only', 'instructor: the terminal is marked read-only');
  expect(await watch.locator('#finish').isHidden(), 'instructor: no "Finish and judge" in a student\'s lab');
  expect(await watch.locator('#stop').isVisible(), 'instructor: a Stop button');
  await watchWire(watch);
  instructorWatching.resolve();

  // What A types shows in the instructor's terminal as A types it.
  await within(aTypedCapture, 60000, 'A typing the capture');
  await waitForScreen(watch, 'source', 'source.pcap', 15000, 'instructor: A\'s typing seen read-only');
  expect(true, 'instructor: A\'s tcpdump command appears in the read-only source terminal');
  // Typing there changes nothing.
  await typeLine(watch, 'source', `echo ${MARKER}`);
  await typeLine(watch, 'dest', `echo ${MARKER}`);
  await watch.waitForTimeout(1500);
  expect(!(await screenText(watch, 'source')).includes(MARKER), 'instructor: the read-only terminal does not echo what the instructor types');
  markerTyped.resolve();

  // A's client runs, then the probes in the instructor's live view too.
  await waitForScreen(watch, 'source', 'client.py', 60000, 'instructor: A\'s client command seen read-only');
  await table.waitForFunction((id) => /ago/.test(document.querySelector(`tr[data-lab="${id}"] td.col-idle`)?.textContent || ''), labId, { timeout: 20000 });
  expect(true, 'instructor: the table counts the time since A\'s last keystroke');
  await watch.waitForSelector('#wire circle.seg[data-kind=keepalive]', { timeout: 60000 });
  await watch.waitForTimeout(1500);
  await watch.locator('#work').scrollIntoViewIfNeeded();
  await shot(watch, 'instructor-watching');
  await shot(watch, 'instructor-watching-full', true);
  await shot(table, 'instructor-table-live', true);

  // The verdict, in the instructor's view of the lab.
  await watch.waitForSelector('#state[data-state=done]', { timeout: 180000 });
  await watch.waitForSelector('#verdict:not([hidden]) tbody tr[data-check]', { timeout: 20000 });
  expect(await watch.locator('#verdict tbody tr.fail').count() === 0, 'instructor: A\'s verdict, all passing, in the instructor\'s view');
  const expectSeen = await watch.evaluate(() => window.__expectSeen);
  expect(expectSeen.length > 0, `instructor: the expectation band was drawn in the read-only view too (${JSON.stringify(expectSeen)})`);
  await watch.locator('#result').scrollIntoViewIfNeeded();
  await watch.waitForTimeout(700);
  await shot(watch, 'instructor-lab-verdict', true);

  // Both labs judged: the table shows them, and the class CSV has both.
  await within(Promise.all([aJudged, bJudged]), 240000, 'both students judged');
  for (const s of [A, B]) {
    await table.waitForFunction((id) => {
      const tr = document.querySelector(`tr[data-lab="${id}"]`);
      return tr && tr.querySelector('td.col-state')?.textContent.startsWith('done') && tr.querySelector('td.col-checks')?.textContent;
    }, s.lab, { timeout: 20000 });
  }
  expect(await table.locator(`tr[data-lab="${A.lab}"] td.col-checks .pass`).count() === 1, 'instructor: A passed, in the table');
  expect(await table.locator(`tr[data-lab="${B.lab}"] td.col-checks .fail`).count() === 1, 'instructor: B failed, in the table');
  expect(await table.locator(`tr[data-lab="${A.lab}"] button.stop`).isHidden(), 'instructor: no Stop for a finished lab');
  await shot(table, 'instructor-table-done', true);
  const [download] = await Promise.all([table.waitForEvent('download', { timeout: 20000 }), table.locator('#csv').click()]);
  const csv = readFileSync(await download.path(), 'utf8');
  const lines = csv.trim().split(/\r?\n/);
  const header = lines[0].split(',');
  const rows = lines.slice(1).map((l) => Object.fromEntries(l.split(',').map((v, i) => [header[i], v])));
  const a = rows.find((r) => r.lab === A.lab), b = rows.find((r) => r.lab === B.lab);
  expect(a && a.student === A.name && a.passed === 'yes' && a.state === 'done', `instructor: the class CSV has A's lab, passed (${JSON.stringify(a)})`);
  expect(b && b.student === B.name && b.passed === 'no' && b.state === 'done', `instructor: the class CSV has B's lab, failed (${JSON.stringify(b)})`);
}

// Each actor fails alone with its own message; the others are not left waiting forever.
// The first failure ends the run: the browser is closed, and what that breaks in the others is not reported.
let over = false;
const actors = { A: studentA, B: studentB, instructor };
await Promise.allSettled(Object.entries(actors).map(([name, f]) => f().catch(async (e) => {
  if (over) return;
  over = true;
  problems.push(`${name}: ${e instanceof Expectation ? e.message : (e && e.stack) || e}`);
  // What each page showed when it went wrong.
  await Promise.all(pages.map(([who, p], i) => p.screenshot({ path: path.join(SHOTS, `failure-${who}-${i}.png`), fullPage: true }).catch(() => {})));
  await browser.close();
})));
if (!over) await browser.close();
if (problems.length) {
  console.error(`\n${problems.length} problem(s):`);
  for (const p of problems) console.error(`FAILED: ${p}`);
  process.exit(1);
}
log('-', `all expectations held in ${((Date.now() - T0) / 1000).toFixed(1)} s; screenshots in ${SHOTS}`);
