// One host's shell in the browser: xterm.js bridged to WS /ws/labs/{id}/terminal/{host}
// (docs/lab-server.md, "Terminals"). The server's binary frames are the terminal's output; we send
// JSON text frames {"type": "input", "data"} and {"type": "resize", "cols", "rows"}. A new connection
// gets the last 64 KiB of output first, so on every (re)connection the terminal is reset and that
// replay redraws it: a dropped socket is re-attached to the same shell, with a growing delay.
import { Terminal } from '/vendor/xterm/lib/xterm.mjs';
import { FitAddon } from '/vendor/xterm-fit/lib/addon-fit.mjs';
import { h } from '/static/api.js';

const BACKOFF = [500, 1000, 2000, 4000, 8000, 15000]; // ms, the last one repeats

export class HostTerminal {
  // readOnly: the instructor watching; nothing typed is sent, and neither is a resize (the pty's
  // size is the student's).
  constructor(labId, host, readOnly) {
    this.labId = labId;
    this.host = host;
    this.readOnly = readOnly;
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.wanted = false;
    this.status = h('span', { class: 'term-status' });
    this.screen = h('div', { class: 'term-screen' });
    this.element = h('div', { class: 'terminal', 'data-host': host, 'data-status': 'idle' },
      h('div', { class: 'term-head' },
        h('span', { class: 'term-host' }, host),
        readOnly ? h('span', { class: 'badge' }, 'read-only') : null,
        this.status),
      this.screen);
    this.term = new Terminal({
      convertEol: false,
      cursorBlink: !readOnly,
      disableStdin: readOnly,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
      fontSize: 13,
      scrollback: 5000,
      theme: { background: '#111827', foreground: '#e5e7eb', cursor: '#f59e0b' },
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    if (!readOnly) {
      this.term.onData((data) => {
        if (this.ended && this.wanted) {
          // The shell was left (`exit`) while the lab runs: a key opens a new one.
          this.ended = false;
          this.open();
          return;
        }
        this.send({ type: 'input', data });
      });
      this.term.onResize(({ cols, rows }) => this.send({ type: 'resize', cols, rows }));
    }
    this.setStatus('idle', 'not connected');
  }

  // Call once the element is in the document.
  mount() {
    this.term.open(this.screen);
    this.refit();
    this.observer = new ResizeObserver(() => {
      clearTimeout(this.fitTimer);
      this.fitTimer = setTimeout(() => this.refit(), 80);
    });
    this.observer.observe(this.screen);
  }

  refit() {
    if (this.screen.clientWidth > 0 && this.screen.clientHeight > 0) {
      try {
        this.fit.fit();
      } catch (e) {
        // not laid out yet
      }
    }
  }

  connect() {
    this.wanted = true;
    if (this.socket || this.timer) return;
    this.open();
  }

  // No more reconnecting (the lab is over); what the terminal shows stays.
  stop(why) {
    this.wanted = false;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.onclose = null;
      socket.close();
    }
    this.setStatus('closed', why || 'closed');
  }

  // The shell is about to end (the lab is being finished): what is connected stays until the server
  // closes it, but nothing reconnects (the server would refuse it).
  hold(why) {
    this.wanted = false;
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.socket) this.setStatus('closed', why || 'closed');
  }

  open() {
    this.timer = null;
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    const url = `${scheme}://${window.location.host}/ws/labs/${encodeURIComponent(this.labId)}/terminal/${encodeURIComponent(this.host)}`;
    this.setStatus('connecting', this.attempt ? 'reconnecting…' : 'connecting…');
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (e) {
      this.retry();
      return;
    }
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    let fresh = true;
    socket.onopen = () => {
      this.attempt = 0;
      this.setStatus('connected', this.readOnly ? 'watching' : 'connected');
      if (!this.readOnly) {
        this.send({ type: 'resize', cols: this.term.cols, rows: this.term.rows });
      }
    };
    socket.onmessage = (event) => {
      if (fresh) {
        // The server replays the shell's recent output first: start from a clean screen.
        this.term.reset();
        fresh = false;
      }
      if (event.data instanceof ArrayBuffer) {
        this.term.write(new Uint8Array(event.data));
      } else {
        this.term.write(String(event.data));
      }
    };
    socket.onclose = (event) => {
      if (this.socket === socket) this.socket = null;
      // 1000: the server closed it because the shell ended: nothing to re-attach to. While the lab runs
      // (someone typed `exit`), a new shell is one key away; never an automatic reconnect, which the server
      // would refuse once the lab is over.
      if (this.wanted && event.code !== 1000) {
        this.retry();
      } else if (this.wanted && !this.readOnly) {
        this.ended = true;
        this.term.write('\r\n[the shell ended: press a key for a new one]\r\n');
        this.setStatus('closed', 'shell ended');
      } else {
        this.wanted = false;
        this.setStatus('closed', event.reason || 'closed');
      }
    };
    socket.onerror = () => {
      // onclose follows and schedules the retry
    };
  }

  retry() {
    const delay = BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)];
    this.attempt += 1;
    this.setStatus('reconnecting', `disconnected; again in ${Math.round(delay / 100) / 10} s`);
    this.timer = setTimeout(() => this.open(), delay);
  }

  send(message) {
    if (this.readOnly) return;
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  setStatus(state, text) {
    this.element.dataset.status = state;
    this.status.textContent = text;
    this.status.className = `term-status ${state}`;
  }

  focus() {
    this.term.focus();
  }
}
