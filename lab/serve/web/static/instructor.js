// The instructor's page: every lab of the class in one table, live from /api/class.stream (each
// message is the whole list), with the time since each lab's last keystroke counted here every second.
import { signIn, post, stream, h, fill, explain, duration, serverNow, ACTIVE, checksPassed, stepsDone } from '/static/api.js';
import { showCatalogue } from '/static/catalogue.js';

const $ = (id) => document.getElementById(id);
const rows = new Map(); // lab id -> {tr, cells, lab}

async function main() {
  if (!(await signIn('instructor'))) return;
  stream('/api/class/stream', render, live);
  setInterval(tick, 1000);
  // The catalogue is loaded when first opened: the class table is what this page is for.
  $('own').addEventListener('toggle', () => {
    if ($('own').open && !$('catalogue').childElementCount) showCatalogue($('catalogue'));
  });
}

function live(state) {
  const el = $('live');
  el.hidden = false;
  el.dataset.state = state;
  el.textContent = state === 'live' ? '● live' : state === 'reconnecting' ? '○ reconnecting…' : '○ live updates stopped: reload the page';
}

function render(labs) {
  if (!Array.isArray(labs)) return;
  const body = $('class').tBodies[0];
  const seen = new Set();
  labs.forEach((lab, i) => {
    seen.add(lab.id);
    let row = rows.get(lab.id);
    if (!row) {
      row = makeRow(lab);
      rows.set(lab.id, row);
    }
    update(row, lab);
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
  });
  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  }
  $('no-labs').hidden = labs.length > 0;
  $('class').hidden = labs.length === 0;
  const count = (pred) => labs.filter(pred).length;
  const active = count((l) => ACTIVE.includes(l.state));
  const queued = count((l) => l.state === 'queued');
  const passed = count((l) => l.verdict && l.verdict.passed);
  const failed = count((l) => l.state === 'failed' || (l.verdict && !l.verdict.passed));
  $('counts').textContent = `${labs.length} labs: ${active} active${queued ? ` (${queued} queued)` : ''}, ${passed} passed, ${failed} failed`;
  tick();
}

function makeRow(lab) {
  const cells = {};
  for (const name of ['student', 'exercise', 'mode', 'step', 'state', 'checks', 'idle', 'open', 'stop']) {
    cells[name] = h('td', { class: `col-${name}` });
  }
  const href = `/labs/${encodeURIComponent(lab.id)}`;
  cells.open.append(h('a', { href }, 'open'));
  const stop = h('button', { type: 'button', class: 'danger small stop' }, 'Stop');
  stop.addEventListener('click', async () => {
    stop.disabled = true;
    $('action-error').hidden = true;
    try {
      await post(`/api/labs/${encodeURIComponent(lab.id)}/stop`);
    } catch (e) {
      fill($('action-error'), `Stopping ${lab.student}'s ${lab.exercise}: ${explain(e)}`);
      $('action-error').hidden = false;
      stop.disabled = false;
    }
  });
  cells.stop.append(stop);
  const tr = h('tr', { 'data-lab': lab.id }, Object.values(cells));
  return { tr, cells, stop, lab };
}

function update(row, lab) {
  row.lab = lab;
  const { cells } = row;
  cells.student.textContent = lab.student;
  cells.exercise.textContent = lab.exercise;
  cells.mode.textContent = lab.mode;
  const steps = stepsDone(lab);
  cells.step.textContent = steps ? `${steps.done}/${steps.total}` : '';
  fill(cells.state, h('span', { class: `state state-${lab.state}` }, lab.state),
    lab.state === 'queued' && lab.queue_position ? h('span', { class: 'muted small' }, ` #${lab.queue_position}`) : null);
  cells.state.title = lab.state === 'failed' ? (lab.error || '') : (lab.stage || '');
  const checks = checksPassed(lab);
  fill(cells.checks, checks ? h('span', { class: checks.ok ? 'pass' : 'fail' }, `${checks.passed}/${checks.total}`) : '');
  const active = ACTIVE.includes(lab.state);
  row.tr.className = active ? 'active' : '';
  row.stop.hidden = !active;
  row.stop.disabled = lab.state === 'finishing';
}

// Every second: the time since each lab's last keystroke.
function tick() {
  const now = serverNow();
  for (const { cells, lab } of rows.values()) {
    if (lab.mode !== 'hands-on' || !lab.last_input) {
      cells.idle.textContent = lab.mode === 'hands-on' && ACTIVE.includes(lab.state) ? 'none yet' : '';
      continue;
    }
    const idle = now - lab.last_input;
    cells.idle.textContent = `${duration(idle)} ago`;
    cells.idle.classList.toggle('stale', ACTIVE.includes(lab.state) && idle > 300);
  }
}

main();
