// The exercises on offer (GET /api/exercises), each with its README, the caller's variant values and
// the buttons that start a lab (POST /api/labs, then on to /labs/{id}).
import { get, post, h, fill, values, explain } from '/static/api.js';

export async function showCatalogue(container) {
  let exercises;
  try {
    exercises = await get('/api/exercises');
  } catch (e) {
    fill(container, h('p', { class: 'error' }, `The exercises could not be loaded: ${explain(e)}`));
    return;
  }
  if (!Array.isArray(exercises) || exercises.length === 0) {
    fill(container, h('p', { class: 'muted' }, 'No exercises are offered.'));
    return;
  }
  fill(container, exercises.map(card));
}

function card(ex) {
  const message = h('p', { class: 'start-error', role: 'alert', hidden: true });
  const buttons = [h('button', { type: 'button', class: 'primary start', 'data-mode': 'auto' }, 'Run automated')];
  if (ex.hands_on) {
    buttons.push(h('button', { type: 'button', class: 'primary start', 'data-mode': 'hands-on' }, 'Do it by hand'));
  }
  for (const button of buttons) {
    button.addEventListener('click', () => start(ex, button.dataset.mode, buttons, message));
  }
  const variant = ex.variant && Object.keys(ex.variant).length ? ex.variant : null;
  return h('article', { class: 'exercise card', 'data-exercise': ex.name },
    h('header', {},
      h('h3', {}, ex.title || ex.name),
      h('code', { class: 'name' }, ex.name),
      ex.hands_on ? h('span', { class: 'badge' }, 'hands-on') : null),
    ex.description ? h('p', { class: 'description' }, ex.description) : null,
    variant ? h('p', { class: 'variant' }, 'your values: ', h('code', {}, values(variant))) : null,
    h('div', { class: 'actions' }, buttons),
    message,
    readme(ex));
}

function readme(ex) {
  if (!ex.readme_html) return null;
  const body = h('div', { class: 'readme' });
  // readme_html is rendered and sanitised by the server (docs/lab-server.md): the one HTML from the
  // API that is set as HTML.
  body.innerHTML = ex.readme_html;
  return h('details', { class: 'readme-block' }, h('summary', {}, 'README'), body);
}

async function start(ex, mode, buttons, message) {
  for (const b of buttons) b.disabled = true;
  message.hidden = true;
  try {
    const lab = await post('/api/labs', { exercise: ex.name, mode, set: {} });
    window.location.assign(`/labs/${encodeURIComponent(lab.id)}`);
  } catch (e) {
    fill(message, explain(e));
    message.hidden = false;
    for (const b of buttons) b.disabled = false;
  }
}
