// What every page shares: the API calls (docs/lab-server.md), the signed-in user, and small DOM and
// formatting helpers. Strings from the API only ever reach the DOM as text (h() below makes text
// nodes), never as HTML; the one exception is an exercise's readme_html, which the server sanitises.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let mePromise = null;
let clockSkew = 0; // the server's clock minus ours, in seconds, where it differs by more than 2 s

// GET /api/me, once per page: {name, role, csrf}.
export function me() {
  if (!mePromise) {
    mePromise = request('GET', '/api/me', undefined, false).then(({ data, response }) => {
      const date = Date.parse(response.headers.get('Date') || '');
      if (!Number.isNaN(date)) {
        const skew = (date - Date.now()) / 1000;
        clockSkew = Math.abs(skew) > 2 ? skew : 0;
      }
      return data;
    });
  }
  return mePromise;
}

// The server's wall clock now, in seconds, as far as this page can tell (timestamps in the API are
// the server's).
export function serverNow() {
  return Date.now() / 1000 + clockSkew;
}

async function request(method, path, body, withCsrf) {
  const headers = { Accept: 'application/json' };
  if (withCsrf) {
    headers['X-CSRF-Token'] = (await me()).csrf;
  }
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'the lab server does not answer; is it still running?');
  }
  let data = null;
  const type = response.headers.get('Content-Type') || '';
  if (type.includes('json')) {
    data = await response.json().catch(() => null);
  }
  if (!response.ok) {
    const message = data && typeof data.error === 'string' ? data.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return { data, response };
}

export async function get(path) {
  return (await request('GET', path, undefined, false)).data;
}

export async function post(path, body) {
  return (await request('POST', path, body, true)).data;
}

export async function del(path) {
  return (await request('DELETE', path, undefined, true)).data;
}

// An EventSource whose every message is JSON, handed to onData. It reconnects by itself (the
// browser's own retry) while the page is open; close() ends it.
export function stream(path, onData, onState) {
  const source = new EventSource(path, { withCredentials: false });
  source.onmessage = (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (e) {
      console.warn('tcplab: a stream message that is not JSON', e);
      return;
    }
    onData(data);
  };
  source.onopen = () => onState && onState('live');
  source.onerror = () => onState && onState(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  return source;
}

// h('a', {href: '/x', class: 'c'}, 'text', child, ...): an element. Attributes are set with
// setAttribute, strings become text nodes, null/undefined/false children are skipped.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Replaces an element's content with the given children (text or nodes).
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const ACTIVE = ['queued', 'starting', 'running', 'finishing'];

// "3/4" for a lab's verdict, or null when it has none.
export function checksPassed(lab) {
  const checks = lab.verdict && Array.isArray(lab.verdict.checks) ? lab.verdict.checks : null;
  if (!checks) return null;
  return { passed: checks.filter((c) => c.passed).length, total: checks.length, ok: !!lab.verdict.passed };
}

// "2/5" steps done for a hands-on lab, or null.
export function stepsDone(lab) {
  if (!Array.isArray(lab.steps) || lab.steps.length === 0) return null;
  return { done: lab.steps.filter((s) => s.done_at).length, total: lab.steps.length };
}

export function clock(ts) {
  if (!ts) return '';
  return new Date(ts * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

export function dateTime(ts) {
  if (!ts) return '';
  const d = new Date(ts * 1000);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? clock(ts) : `${d.toLocaleDateString()} ${clock(ts)}`;
}

// 75 -> "1 min 15 s"
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '';
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// "keepidle=7 keepintvl=2"
export function values(obj) {
  return Object.entries(obj || {}).map(([k, v]) => `${k}=${v}`).join(' ');
}

// Copies text to the clipboard: the Clipboard API where the page is a secure context (https or
// localhost), else the old selection-and-execCommand way, which works over plain http too.
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (e) {
      // fall through
    }
  }
  const area = h('textarea', { class: 'offscreen', readonly: true });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch (e) {
    ok = false;
  }
  area.remove();
  return ok;
}

// A small "Copy" button for the given text.
export function copyButton(text, label = 'Copy') {
  const button = h('button', { type: 'button', class: 'copy', title: 'Copy to the clipboard' }, label);
  button.addEventListener('click', async () => {
    const ok = await copyText(text);
    button.textContent = ok ? 'Copied' : 'Select and copy';
    setTimeout(() => { button.textContent = label; }, 1500);
  });
  return button;
}

// Shows an error for the whole page (no token, server gone) in #notice.
export function notice(message, kind = 'error') {
  const el = document.getElementById('notice');
  if (!el) return;
  if (!message) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  el.className = `notice ${kind}`;
  el.hidden = false;
  fill(el, message);
}

// The message to show for an API error; a 401 means the page was opened without the personal link.
export function explain(error) {
  if (error instanceof ApiError && error.status === 401) {
    return 'You are not signed in: open your personal link (http://…/join/…) from the instructor once, and this page works from then on.';
  }
  return error && error.message ? error.message : String(error);
}

// Who is signed in, shown in the header; null (with the reason shown, and the page's sections
// hidden) when nobody is, or when the page is for another role than theirs.
export async function signIn(role = null) {
  let user;
  try {
    user = await me();
  } catch (e) {
    notice(explain(e));
    for (const section of document.querySelectorAll('main > section')) section.hidden = true;
    return null;
  }
  showUser(user);
  if (role && user.role !== role) {
    notice(`This page is the ${role}'s.`);
    for (const section of document.querySelectorAll('main > section')) section.hidden = true;
    return null;
  }
  return user;
}

// Fills the header's user slot.
export function showUser(user) {
  const el = document.getElementById('user');
  if (el) fill(el, user.name, user.role === 'instructor' ? h('span', { class: 'badge role' }, 'instructor') : null);
}
