// One lab, live: GET /api/labs/{id} once, then the lab again from /api/labs/{id}/stream each time it
// changes (no polling). Its owner works in it (terminals, finish, end, retry); anyone else (the
// instructor) watches it read-only and may stop it.
import { me, get, post, del, stream, h, fill, showUser, notice, explain, clock, dateTime, copyButton, ACTIVE, checksPassed } from '/static/api.js';
import { HostTerminal } from '/static/terminal.js';
import { WireView, WindowChart } from '/static/wire.js';

const $ = (id) => document.getElementById(id);
const labId = decodeURIComponent(window.location.pathname.split('/').filter(Boolean)[1] || '');

let user = null;
let owner = false;
let source = null;
let wireView = null;
let windowChart = null;
const terminals = new Map(); // host -> HostTerminal
const drawn = {}; // what was last drawn, as JSON, per part: a part is redrawn only when it changed
let lastState = null;
let latest = null; // the lab as last received
let busy = false; // a button's request is on its way

async function main() {
  try {
    user = await me();
  } catch (e) {
    notice(explain(e));
    return;
  }
  showUser(user);
  if (user.role === 'instructor') {
    $('back').textContent = '← class';
    $('back-bottom').textContent = '← Back to the class';
  }
  let lab;
  try {
    lab = await get(`/api/labs/${encodeURIComponent(labId)}`);
  } catch (e) {
    notice(e.status === 404 ? `There is no lab ${labId}.` : explain(e));
    return;
  }
  owner = lab.student === user.name;
  wireActions(lab);
  render(lab);
  if (ACTIVE.includes(lab.state)) {
    source = stream(`/api/labs/${encodeURIComponent(labId)}/stream`, render, live);
  }
  exerciseTitle(lab.exercise);
}

function live(state) {
  const el = $('live');
  el.hidden = false;
  el.dataset.state = state;
  el.textContent = state === 'live' ? '● live' : state === 'reconnecting' ? '○ reconnecting…' : '○ live updates stopped: reload the page';
}

async function exerciseTitle(name) {
  try {
    const exercises = await get('/api/exercises');
    const ex = exercises.find((e) => e.name === name);
    if (ex && ex.title) {
      $('title').textContent = ex.title;
      $('title').title = name;
    }
  } catch (e) {
    // the name stays
  }
}

function render(lab) {
  if (!lab || lab.id !== labId) return;
  $('summary').hidden = false;
  document.title = `${lab.exercise} · ${lab.student} · tcplab`;
  if (!$('title').textContent) $('title').textContent = lab.exercise;
  fill($('meta'), h('span', {}, lab.student), ' · ', h('span', {}, lab.mode === 'hands-on' ? 'by hand' : 'automated'),
    ' · started ', dateTime(lab.created), ' · lab ', h('code', {}, lab.id),
    lab.set && Object.keys(lab.set).length ? [' · ', h('code', {}, Object.entries(lab.set).map(([k, v]) => `${k}=${v}`).join(' '))] : null);

  const state = $('state');
  state.textContent = lab.state;
  state.dataset.state = lab.state;
  state.className = `state state-${lab.state}`;
  const queued = lab.state === 'queued' && lab.queue_position;
  $('queue').hidden = !queued;
  $('queue').textContent = queued ? `place ${lab.queue_position} in the queue` : '';
  $('stage').textContent = lab.stage || '';
  $('stage').hidden = !lab.stage || lab.state === 'done';
  $('error').hidden = !(lab.state === 'failed' && lab.error);
  $('error').textContent = lab.state === 'failed' ? (lab.error || '') : '';

  const active = ACTIVE.includes(lab.state);
  latest = lab;
  buttons(lab);

  renderEvents(lab);
  if (lab.mode === 'hands-on') {
    renderSteps(lab);
    renderTerminals(lab);
    renderWire(lab);
  }
  renderResult(lab);

  if (!active && source) {
    // Nothing changes in a lab that is over: no reconnecting stream.
    source.close();
    source = null;
    $('live').hidden = true;
  }
  lastState = lab.state;
}

// Which of the lab's buttons show, for whom, in which state.
function buttons(lab) {
  const active = ACTIVE.includes(lab.state);
  $('retry').hidden = !(owner && lab.state === 'failed');
  $('finish').hidden = !(owner && lab.mode === 'hands-on' && active);
  $('finish').disabled = lab.state !== 'running' || busy;
  $('delete').hidden = !(owner && active);
  $('delete').disabled = busy;
  if (!$('delete').dataset.armed) $('delete').textContent = endLabel(lab);
  $('stop').hidden = !(!owner && user.role === 'instructor' && active);
  $('stop').disabled = busy || lab.state === 'finishing';
  $('retry').disabled = busy;
}

// A queued lab is cancelled (it never starts); a started one ended without a verdict.
function endLabel(lab) {
  return lab && lab.state === 'queued' ? 'Cancel' : 'End without a verdict';
}

function changed(part, value) {
  const json = JSON.stringify(value === undefined ? null : value);
  if (drawn[part] === json) return false;
  drawn[part] = json;
  return true;
}

function renderEvents(lab) {
  const events = Array.isArray(lab.events) ? lab.events : [];
  $('events-block').hidden = events.length === 0;
  const details = $('events-details');
  if (lab.state !== lastState) {
    // Open while the lab runs without steps to follow; folded once it is over.
    details.open = ACTIVE.includes(lab.state) && lab.mode !== 'hands-on';
  }
  if (!changed('events', events)) return;
  $('events-count').textContent = `(${events.length})`;
  fill($('events'), events.map((ev) => h('li', { class: `event kind-${ev.kind || 'none'}` },
    h('span', { class: 'time' }, clock(ev.ts)),
    h('span', { class: 'kind' }, ev.kind || ''),
    h('span', { class: 'text' }, ev.text || ''))));
}

function renderSteps(lab) {
  const steps = Array.isArray(lab.steps) ? lab.steps : [];
  const hosts = Array.isArray(lab.hosts) ? lab.hosts : [];
  $('work').hidden = steps.length === 0 && hosts.length === 0;
  if (!changed('steps', steps)) return;
  const current = steps.findIndex((st) => !st.done_at);
  fill($('steps'), steps.map((step, i) => {
    const li = h('li', { class: `step${step.done_at ? ' done' : ''}${i === current ? ' current' : ''}`, 'data-step': i + 1 },
      h('div', { class: 'step-head' },
        h('span', { class: 'do' }, step.do || ''),
        step.done_at ? h('span', { class: 'done-mark', title: 'done' }, `✓ ${clock(step.done_at)}`) : null),
      step.host ? h('span', { class: 'host badge' }, `on ${step.host}`) : null,
      step.why ? h('p', { class: 'why' }, step.why) : null,
      step.run ? h('div', { class: 'cmd' }, h('pre', {}, h('code', {}, step.run)), copyButton(step.run)) : null);
    return li;
  }));
  // Keep the step to do next in sight within the list (the page itself does not move).
  const list = $('steps');
  const currentLi = list.querySelector('li.current');
  if (currentLi && ACTIVE.includes(lab.state)) {
    const top = currentLi.offsetTop; // the list is the offset parent
    if (top < list.scrollTop || top + currentLi.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - 8);
    }
  }
}

function renderTerminals(lab) {
  const hosts = Array.isArray(lab.hosts) ? lab.hosts : [];
  // A terminal connects only while the lab runs: the server refuses one otherwise (404), so while it
  // is being finished the open ones stay until their shells end, and none reconnects.
  const running = lab.state === 'running';
  if (!terminals.size && !ACTIVE.includes(lab.state)) {
    // A lab that was over when the page opened: its shells are gone.
    $('terminals').closest('.terminals-column').hidden = true;
    return;
  }
  for (const host of hosts) {
    if (terminals.has(host)) continue;
    const t = new HostTerminal(labId, host, !owner);
    $('terminals').append(t.element);
    t.mount();
    terminals.set(host, t);
  }
  for (const t of terminals.values()) {
    if (running) t.connect();
    else if (lab.state === 'finishing') t.hold('the lab is being judged');
    else if (!ACTIVE.includes(lab.state)) t.stop('the lab is over');
  }
}

function renderWire(lab) {
  const wire = lab.wire;
  if (!wire) return;
  $('wire-block').hidden = false;
  if (!wireView) wireView = new WireView($('wire'));
  if (changed('wire', wire)) {
    wireView.update(wire);
    if (Array.isArray(wire.window) && wire.window.length) {
      $('window-block').hidden = false;
      if (!windowChart) windowChart = new WindowChart($('window'));
      windowChart.update(wire);
    }
  }
}

function renderResult(lab) {
  const over = !ACTIVE.includes(lab.state);
  const files = Array.isArray(lab.files) ? lab.files : [];
  const verdict = lab.verdict && Array.isArray(lab.verdict.checks) ? lab.verdict : null;
  $('result').hidden = !(over && (verdict || files.length || lab.state === 'done'));
  $('no-verdict').hidden = !(lab.state === 'done' && !verdict);
  $('verdict').hidden = !verdict;
  if (changed('verdict', verdict) && verdict) {
    const counts = checksPassed(lab);
    const summary = $('verdict-summary');
    summary.textContent = `${verdict.passed ? 'PASSED' : 'FAILED'} ${counts.passed}/${counts.total} checks`;
    summary.className = `verdict-summary ${verdict.passed ? 'pass' : 'fail'}`;
    fill($('verdict').tBodies[0], verdict.checks.map((c) => h('tr', { 'data-check': c.name, class: c.passed ? 'pass' : 'fail' },
      h('td', { class: 'check' }, c.name),
      h('td', { class: 'result' }, c.passed ? 'PASS' : 'FAIL'),
      h('td', { class: 'expected' }, c.expected || ''),
      h('td', { class: 'observed' }, c.observed || '', c.detail ? h('div', { class: 'detail' }, c.detail) : null),
      h('td', { class: 'hint' }, c.hint || ''))));
  }
  $('files-block').hidden = files.length === 0;
  if (changed('files', [files, lab.filters])) {
    const filters = lab.filters || {};
    fill($('files'), files.map((name) => h('li', {},
      h('a', { href: `/api/labs/${encodeURIComponent(labId)}/files/${encodeURIComponent(name)}`, download: name }, name),
      filters[name] ? h('span', { class: 'filter' }, 'Wireshark display filter: ', h('code', {}, filters[name]), copyButton(filters[name])) : null)));
  }
  if (over && lastState && ACTIVE.includes(lastState)) {
    // It just ended: the verdict is what matters now.
    $('result').scrollIntoView({ block: 'start', behavior: 'smooth' });
  }
}

function wireActions(lab) {
  const run = async (action) => {
    busy = true;
    buttons(latest);
    $('action-error').hidden = true;
    try {
      await action();
    } catch (e) {
      fill($('action-error'), explain(e));
      $('action-error').hidden = false;
    } finally {
      busy = false;
      buttons(latest);
    }
  };
  const base = `/api/labs/${encodeURIComponent(lab.id)}`;
  $('finish').addEventListener('click', () => run(() => post(`${base}/finish`)));
  $('stop').addEventListener('click', () => run(() => post(`${base}/stop`)));
  $('retry').addEventListener('click', () => run(async () => {
    const fresh = await post(`${base}/retry`);
    window.location.assign(`/labs/${encodeURIComponent(fresh.id)}`);
  }));
  // Ending a lab throws its work away: the first click arms the button, a second within 4 s ends it.
  const end = $('delete');
  let armed = null;
  end.addEventListener('click', () => {
    if (!armed) {
      end.textContent = latest && latest.state === 'queued' ? 'Click again to cancel' : 'Click again to end it';
      end.dataset.armed = '1';
      armed = setTimeout(() => {
        armed = null;
        end.textContent = endLabel(latest);
        delete end.dataset.armed;
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    end.textContent = endLabel(latest);
    delete end.dataset.armed;
    run(() => del(base));
  });
}

main();
