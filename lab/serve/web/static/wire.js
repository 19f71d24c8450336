// The live view of the wire (docs/lab-server.md, "The live view of the wire"): a timeline of the
// segments that matter, one lane per sender, in seconds since wire.t0, with the kernel model's next
// expected event drawn as a band from expect.low to expect.high; and, for the window exercises, the
// server's advertised window over time (uPlot).
import uPlot from '/vendor/uplot/uPlot.esm.js';
import { h, fill } from '/static/api.js';

const SVG = 'http://www.w3.org/2000/svg';

// Every kind the keeper writes, in the legend's order, with its colour and its name in the legend.
export const KINDS = [
  ['syn', '#2563eb', 'SYN'],
  ['syn-ack', '#0ea5e9', 'SYN-ACK'],
  ['data', '#64748b', 'data'],
  ['keepalive', '#f59e0b', 'keepalive probe'],
  ['keepalive-ack', '#84cc16', 'keepalive ACK'],
  ['zero-window', '#e11d48', 'zero window'],
  ['zero-window-probe', '#c026d3', 'zero-window probe'],
  ['window-update', '#16a34a', 'window update'],
  ['tail-loss-probe', '#a855f7', 'tail loss probe'],
  ['rto-retransmission', '#7c3aed', 'RTO retransmission'],
  ['retransmission', '#6d28d9', 'retransmission'],
  ['nagle-held', '#0891b2', 'held by Nagle'],
  ['delayed-ack', '#ca8a04', 'delayed ACK'],
  ['rst', '#b91c1c', 'RST'],
  ['fin', '#0f766e', 'FIN'],
];
const COLOUR = Object.fromEntries(KINDS.map(([k, c]) => [k, c]));
const OTHER = '#9ca3af';

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// A step of 1, 2 or 5 times a power of ten giving about `count` ticks over span.
function niceStep(span, count) {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) {
    if (raw <= m * power) return m * power;
  }
  return 10 * power;
}

function secs(t, step) {
  const digits = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step)));
  return `${t.toFixed(digits)} s`;
}

// The seconds since t0 the timeline spans: every segment, the anchor, the expected band (and the
// window chart's points), with a little room either side.
export function timeRange(wire) {
  const t0 = wire && typeof wire.t0 === 'number' ? wire.t0 : null;
  if (t0 === null) return [0, 10];
  let lo = 0, hi = 0, any = false;
  const see = (t) => {
    lo = Math.min(lo, t);
    hi = Math.max(hi, t);
    any = true;
  };
  for (const seg of Array.isArray(wire.segments) ? wire.segments : []) see(seg.ts - t0);
  for (const point of Array.isArray(wire.window) ? wire.window : []) see(point[0] - t0);
  if (wire.expect && typeof wire.expect.high === 'number') see(wire.expect.high - t0);
  if (typeof wire.anchor === 'number') see(wire.anchor - t0);
  if (hi - lo < 1) hi = lo + (any ? 1 : 10);
  const pad = (hi - lo) * 0.03;
  return [lo - pad, hi + pad];
}

export class WireView {
  // container: #wire; it gets data-segments (how many segments are drawn) and data-expect (the
  // expected event's label, or "").
  constructor(container) {
    this.container = container;
    this.wire = null;
    this.svgBox = h('div', { class: 'wire-svg' });
    this.expectLine = h('p', { class: 'expect-line' });
    this.legend = h('div', { class: 'legend' });
    this.list = h('tbody');
    this.listCount = h('span');
    this.listBlock = h('details', { class: 'segments' },
      h('summary', {}, 'segments ', this.listCount),
      h('table', { class: 'list compact' },
        h('thead', {}, h('tr', {}, h('th', {}, 't (s)'), h('th', {}, 'from'), h('th', {}, 'kind'),
          h('th', {}, 'len'), h('th', {}, 'win'), h('th', {}, 'what'))),
        this.list));
    fill(container, this.svgBox, this.expectLine, this.legend, this.listBlock);
    container.dataset.segments = '0';
    container.dataset.expect = '';
    this.width = 0;
    new ResizeObserver(() => {
      const width = this.svgBox.clientWidth;
      if (width && width !== this.width) this.draw();
    }).observe(this.svgBox);
  }

  update(wire) {
    this.wire = wire;
    this.draw();
    this.drawList();
  }

  draw() {
    const wire = this.wire || {};
    const t0 = typeof wire.t0 === 'number' ? wire.t0 : null;
    const segments = Array.isArray(wire.segments) && t0 !== null ? wire.segments : [];
    const expect = wire.expect && t0 !== null && typeof wire.expect.low === 'number' ? wire.expect : null;
    const anchor = typeof wire.anchor === 'number' && t0 !== null ? wire.anchor - t0 : null;
    const width = Math.max(480, this.svgBox.clientWidth || 0);
    this.width = this.svgBox.clientWidth;

    const senders = ['client', 'server'];
    for (const seg of segments) {
      if (seg.from && !senders.includes(seg.from)) senders.push(seg.from);
    }
    const left = 70, right = 16, top = 36, bottom = 26, lane = 34;
    const plotH = senders.length * lane;
    const height = top + plotH + bottom;

    const [lo, hi] = timeRange(wire);
    const x = (t) => left + ((t - lo) / (hi - lo)) * (width - left - right);

    const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'timeline', role: 'img',
      'aria-label': `${segments.length} segments on a timeline in seconds since the first SYN` });

    // Lanes, one per sender.
    senders.forEach((who, i) => {
      const y = top + i * lane;
      svg.append(s('rect', { x: left, y, width: width - left - right, height: lane, class: i % 2 ? 'lane odd' : 'lane' }));
      svg.append(s('text', { x: left - 8, y: y + lane / 2 + 4, 'text-anchor': 'end', class: 'lane-label' }, who));
    });

    // The time axis.
    const step = niceStep(hi - lo, Math.max(4, Math.floor((width - left - right) / 90)));
    for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) {
      const tx = x(t);
      svg.append(s('line', { x1: tx, x2: tx, y1: top, y2: top + plotH, class: 'grid' }));
      svg.append(s('text', { x: tx, y: top + plotH + 16, 'text-anchor': 'middle', class: 'tick' }, secs(Math.abs(t) < 1e-9 ? 0 : t, step)));
    }
    svg.append(s('line', { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, class: 'axis' }));

    const label = (text, at, y, cls) => {
      // Kept inside the plot: anchored at its start, middle or end depending on where it falls.
      const anchorAt = at < left + 120 ? 'start' : at > width - right - 120 ? 'end' : 'middle';
      return s('text', { x: at, y, 'text-anchor': anchorAt, class: cls }, text);
    };

    // The last segment the client received before the probes: the kernel's idle clock starts there.
    if (anchor !== null) {
      const ax = x(anchor);
      svg.append(s('line', { x1: ax, x2: ax, y1: top - 6, y2: top + plotH, class: 'anchor' }));
      svg.append(label(`last received ${anchor.toFixed(3)} s`, ax, top - 9, 'anchor-label'));
    }

    // The kernel model's next expected event.
    if (expect) {
      const x1 = x(expect.low - t0), x2 = x(expect.high - t0);
      const bw = Math.max(4, x2 - x1);
      const bx = x2 - x1 < 4 ? (x1 + x2) / 2 - 2 : x1;
      const band = s('rect', { x: bx, y: top - 2, width: bw, height: plotH + 4, class: 'expect-band', rx: 2 },
        s('title', {}, `${expect.what}: expected between ${(expect.low - t0).toFixed(3)} and ${(expect.high - t0).toFixed(3)} s`));
      svg.append(band);
      if (typeof expect.nominal === 'number') {
        const nx = x(expect.nominal - t0);
        svg.append(s('line', { x1: nx, x2: nx, y1: top - 2, y2: top + plotH + 2, class: 'expect-nominal' }));
      }
      svg.append(label(`expected: ${expect.what}`, (x1 + x2) / 2, 14, 'expect-label'));
    }

    // The segments.
    for (const seg of segments) {
      const lanes = senders.indexOf(seg.from);
      const cy = top + Math.max(0, lanes) * lane + lane / 2;
      const colour = COLOUR[seg.kind] || OTHER;
      const t = seg.ts - t0;
      const details = [`${t.toFixed(3)} s  ${seg.from || '?'}  ${seg.kind}`, seg.text,
        seg.len !== undefined ? `len ${seg.len}` : null, seg.win !== undefined ? `win ${seg.win}` : null].filter(Boolean).join('\n');
      const marker = seg.kind === 'rst'
        ? s('rect', { x: x(t) - 5, y: cy - 5, width: 10, height: 10, class: 'seg', fill: colour, 'data-kind': seg.kind, transform: `rotate(45 ${x(t)} ${cy})` })
        : s('circle', { cx: x(t), cy, r: 5.5, class: 'seg', fill: colour, 'data-kind': seg.kind });
      marker.append(s('title', {}, details));
      svg.append(marker);
    }
    if (!segments.length) {
      svg.append(s('text', { x: (left + width - right) / 2, y: top + plotH / 2 + 4, 'text-anchor': 'middle', class: 'empty' },
        'No segments yet: they appear here as the capture sees them.'));
    }
    this.svgBox.replaceChildren(svg);

    // The legend: the kinds on the timeline, and the band.
    const present = new Set(segments.map((seg) => seg.kind));
    const items = KINDS.filter(([k]) => present.has(k)).map(([k, c, name]) => legendItem(c, name, k));
    for (const k of present) {
      if (!COLOUR[k]) items.push(legendItem(OTHER, k, k));
    }
    if (expect) items.push(h('span', { class: 'item expected' }, h('span', { class: 'swatch band' }), 'expected next (kernel model)'));
    if (anchor !== null) items.push(h('span', { class: 'item' }, h('span', { class: 'swatch anchor' }), 'last segment received'));
    fill(this.legend, items);

    if (expect) {
      fill(this.expectLine, 'The kernel model expects next: ', h('strong', {}, expect.what), ' between ',
        h('strong', {}, `${(expect.low - t0).toFixed(3)}`), ' and ', h('strong', {}, `${(expect.high - t0).toFixed(3)} s`),
        typeof expect.nominal === 'number' ? ` (nominal ${(expect.nominal - t0).toFixed(3)} s)` : '');
      this.expectLine.hidden = false;
    } else {
      this.expectLine.hidden = true;
    }
    this.container.dataset.segments = String(segments.length);
    this.container.dataset.expect = expect ? String(expect.what || '') : '';
  }

  drawList() {
    const wire = this.wire || {};
    const segments = Array.isArray(wire.segments) && typeof wire.t0 === 'number' ? wire.segments : [];
    this.listCount.textContent = `(${segments.length})`;
    fill(this.list, segments.slice().reverse().map((seg) => h('tr', { 'data-kind': seg.kind },
      h('td', { class: 'num' }, (seg.ts - wire.t0).toFixed(3)),
      h('td', {}, seg.from || ''),
      h('td', {}, h('span', { class: 'dot', 'data-kind': seg.kind }), seg.kind),
      h('td', { class: 'num' }, seg.len ?? ''),
      h('td', { class: 'num' }, seg.win ?? ''),
      h('td', {}, seg.text || ''))));
    for (const dot of this.list.querySelectorAll('.dot')) {
      dot.style.background = COLOUR[dot.dataset.kind] || OTHER;
    }
  }
}

function legendItem(colour, name, kind) {
  const swatch = h('span', { class: 'swatch' });
  swatch.style.background = colour;
  return h('span', { class: 'item', 'data-kind': kind }, swatch, name);
}

// The server's advertised window against seconds since t0, as a step line.
export class WindowChart {
  constructor(container) {
    this.container = container;
    this.plot = null;
    new ResizeObserver(() => {
      if (this.plot && this.container.clientWidth) this.plot.setSize({ width: this.container.clientWidth, height: 220 });
    }).observe(container);
  }

  update(wire) {
    const points = wire && Array.isArray(wire.window) && typeof wire.t0 === 'number' ? wire.window : [];
    if (!points.length) return false;
    const xs = points.map((p) => p[0] - wire.t0);
    const ys = points.map((p) => p[1]);
    this.range = timeRange(wire);
    if (!this.plot) {
      this.plot = new uPlot({
        width: Math.max(400, this.container.clientWidth),
        height: 220,
        // The same span as the timeline above, so that their seconds line up.
        scales: { x: { time: false, range: () => this.range }, y: { range: (u, min, max) => [0, Math.max(1024, max * 1.1)] } },
        axes: [
          { label: 'seconds since the first SYN', values: (u, v) => v.map((t) => `${t} s`) },
          { label: 'bytes', size: 70 },
        ],
        series: [
          { label: 't (s)', value: (u, v) => (v === null ? '' : v.toFixed(3)) },
          { label: 'advertised window (bytes)', stroke: '#2563eb', width: 2, fill: 'rgba(37, 99, 235, 0.08)',
            paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
        ],
        legend: { live: true },
      }, [xs, ys], this.container);
    } else {
      this.plot.setData([xs, ys]);
    }
    return true;
  }
}
