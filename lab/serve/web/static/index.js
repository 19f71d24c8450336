// The student's page: the catalogue, then their own labs, newest first.
import { signIn, get, h, fill, explain, checksPassed, dateTime } from '/static/api.js';
import { showCatalogue } from '/static/catalogue.js';

async function main() {
  if (!(await signIn())) return;
  await Promise.all([showCatalogue(document.getElementById('catalogue')), showLabs()]);
}

async function showLabs() {
  const body = document.querySelector('#labs tbody');
  let labs;
  try {
    labs = await get('/api/labs');
  } catch (e) {
    fill(body, h('tr', {}, h('td', { colspan: 6, class: 'error' }, `Your labs could not be loaded: ${explain(e)}`)));
    return;
  }
  document.getElementById('no-labs').hidden = labs.length > 0;
  document.getElementById('labs').hidden = labs.length === 0;
  fill(body, labs.map(row));
}

function row(lab) {
  const href = `/labs/${encodeURIComponent(lab.id)}`;
  const checks = checksPassed(lab);
  return h('tr', { 'data-lab': lab.id },
    h('td', {}, dateTime(lab.created)),
    h('td', {}, lab.exercise),
    h('td', {}, lab.mode),
    h('td', {}, h('span', { class: `state state-${lab.state}` }, lab.state)),
    h('td', {}, checks
      ? h('span', { class: checks.ok ? 'pass' : 'fail' }, `passed ${checks.passed}/${checks.total}`)
      : (lab.state === 'failed' ? h('span', { class: 'muted' }, lab.error || '') : '')),
    h('td', {}, h('a', { href }, 'open')));
}

main();
