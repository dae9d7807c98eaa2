/**
 * A hand-written SVG chart of the results: one column per workload, ops/s (linear y) and
 * p99 latency (log y) against ops in flight (log x). One line per (system, peers, value
 * size): colour by peers and value, dashed for etcd.
 */

export interface ChartPoint {
  system: string;
  peers: number;
  workload: string;
  valueBytes: number;
  inFlight: number;
  opsPerSec: number;
  p99Ms: number;
}

const W = 1100;
const PANEL_W = 470;
const PANEL_H = 290;
const LEFT = 80;
const TOP = 90;
const GAP_X = 90;
const GAP_Y = 70;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(n: number): string {
  if (n >= 1e6) return `${+(n / 1e6).toPrecision(3)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toPrecision(3)}k`;
  if (n >= 1) return `${+n.toPrecision(3)}`;
  return `${+n.toPrecision(2)}`;
}

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function valueLabel(b: number): string {
  return b >= 1024 && b % 1024 === 0 ? `${b / 1024} KiB` : `${b} B`;
}

export function renderChart(points: ChartPoint[], title: string, subtitle: string): string {
  const workloads = [...new Set(points.map((p) => p.workload))];
  const xs = [...new Set(points.map((p) => p.inFlight))].sort((a, b) => a - b);
  const xMin = Math.log2(xs[0] ?? 1);
  const xMax = Math.log2(xs[xs.length - 1] ?? 1);
  const seriesKey = (p: ChartPoint) => `${p.peers}|${p.valueBytes}`;
  const colorKeys = [...new Set(points.map(seriesKey))];
  const color = (p: ChartPoint) => COLORS[colorKeys.indexOf(seriesKey(p)) % COLORS.length]!;
  const systems = [...new Set(points.map((p) => p.system))];
  const H = TOP + 2 * PANEL_H + GAP_Y + 60 + 22 * Math.ceil((colorKeys.length * systems.length) / 3);
  const width = Math.max(W, LEFT + workloads.length * (PANEL_W + GAP_X));
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H}" viewBox="0 0 ${width} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${LEFT}" y="28" font-size="18" font-weight="bold">${esc(title)}</text>`,
    `<text x="${LEFT}" y="48" fill="#555">${esc(subtitle)}</text>`,
  );
  const xPos = (x0: number, inFlight: number) =>
    xMax === xMin ? x0 + PANEL_W / 2 : x0 + ((Math.log2(inFlight) - xMin) / (xMax - xMin)) * PANEL_W;

  workloads.forEach((wl, col) => {
    const x0 = LEFT + col * (PANEL_W + GAP_X);
    const mine = points.filter((p) => p.workload === wl);
    for (const metric of ['ops', 'p99'] as const) {
      const y0 = TOP + (metric === 'ops' ? 0 : PANEL_H + GAP_Y);
      let yPos: (v: number) => number;
      let ticks: number[];
      if (metric === 'ops') {
        const top = niceMax(Math.max(...mine.map((p) => p.opsPerSec), 1));
        yPos = (v) => y0 + PANEL_H - (v / top) * PANEL_H;
        ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * top);
      } else {
        const vals = mine.map((p) => p.p99Ms).filter((v) => v > 0 && Number.isFinite(v));
        const lo = 10 ** Math.floor(Math.log10(Math.min(...vals, 1)));
        const hi = 10 ** Math.ceil(Math.log10(Math.max(...vals, lo * 10)));
        const span = Math.log10(hi) - Math.log10(lo);
        yPos = (v) => y0 + PANEL_H - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / span) * PANEL_H;
        ticks = [];
        for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
      }
      // frame, grid, ticks
      out.push(`<rect x="${x0}" y="${y0}" width="${PANEL_W}" height="${PANEL_H}" fill="none" stroke="#999"/>`);
      for (const t of ticks) {
        const y = yPos(t).toFixed(1);
        out.push(
          `<line x1="${x0}" x2="${x0 + PANEL_W}" y1="${y}" y2="${y}" stroke="#eee"/>`,
          `<text x="${x0 - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#444">${fmt(t)}</text>`,
        );
      }
      for (const x of xs) {
        const px = xPos(x0, x).toFixed(1);
        out.push(
          `<line x1="${px}" x2="${px}" y1="${y0}" y2="${y0 + PANEL_H}" stroke="#eee"/>`,
          `<text x="${px}" y="${y0 + PANEL_H + 16}" text-anchor="middle" fill="#444">${x}</text>`,
        );
      }
      const heading = metric === 'ops' ? `${wl}: ops/s` : `${wl}: p99 latency, ms (log)`;
      out.push(`<text x="${x0}" y="${y0 - 8}" font-weight="bold">${esc(heading)}</text>`);
      out.push(`<text x="${x0 + PANEL_W / 2}" y="${y0 + PANEL_H + 34}" text-anchor="middle" fill="#444">ops in flight (log scale)</text>`);
      // series
      const groups = new Map<string, ChartPoint[]>();
      for (const p of mine) {
        const k = `${p.system}|${seriesKey(p)}`;
        groups.set(k, [...(groups.get(k) ?? []), p]);
      }
      for (const g of groups.values()) {
        g.sort((a, b) => a.inFlight - b.inFlight);
        const c = color(g[0]!);
        const dash = g[0]!.system === 'etcd' ? ' stroke-dasharray="6 4"' : '';
        const v = (p: ChartPoint) => (metric === 'ops' ? p.opsPerSec : p.p99Ms);
        const pts = g.filter((p) => Number.isFinite(v(p))).map((p) => `${xPos(x0, p.inFlight).toFixed(1)},${yPos(v(p)).toFixed(1)}`);
        if (pts.length > 1) out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${c}" stroke-width="2"${dash}/>`);
        for (const pt of pts) {
          const [px, py] = pt.split(',');
          out.push(
            g[0]!.system === 'etcd'
              ? `<rect x="${Number(px) - 3.5}" y="${Number(py) - 3.5}" width="7" height="7" fill="white" stroke="${c}" stroke-width="1.5"/>`
              : `<circle cx="${px}" cy="${py}" r="3.5" fill="${c}"/>`,
          );
        }
      }
    }
  });
  // legend
  let i = 0;
  const ly0 = TOP + 2 * PANEL_H + GAP_Y + 60;
  for (const system of systems) {
    for (const k of colorKeys) {
      const [peers, value] = k.split('|').map(Number) as [number, number];
      const lx = LEFT + (i % 3) * 330;
      const ly = ly0 + Math.floor(i / 3) * 22;
      const c = COLORS[colorKeys.indexOf(k) % COLORS.length]!;
      const dash = system === 'etcd' ? ' stroke-dasharray="6 4"' : '';
      out.push(
        `<line x1="${lx}" x2="${lx + 34}" y1="${ly}" y2="${ly}" stroke="${c}" stroke-width="2"${dash}/>`,
        `<text x="${lx + 42}" y="${ly}" dominant-baseline="middle">${esc(`${system}, ${peers} peers, ${valueLabel(value)} values`)}</text>`,
      );
      i++;
    }
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
