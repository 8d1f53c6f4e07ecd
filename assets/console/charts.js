// Delivered and failed per second, computed here from the counters of successive
// GET /api/routes answers (the daemon keeps no history), and drawn as small inline SVG charts.

const SVG = "http://www.w3.org/2000/svg";
// Five minutes of 2 s polls.
export const WINDOW_SECONDS = 300;

// Per route: [{t (ms), delivered, failed}], oldest first.
const samples = new Map();

export function record(routes, now = Date.now()) {
  for (const r of routes) {
    const list = samples.get(r.name) || [];
    list.push({ t: now, delivered: r.delivered, failed: r.failed });
    while (list.length > 2 && now - list[0].t > WINDOW_SECONDS * 1000) list.shift();
    samples.set(r.name, list);
  }
}

// Per-second rates between successive samples of `field`; a counter that went down (the
// daemon restarted) counts as 0 for that step.
export function rates(route, field) {
  const list = samples.get(route) || [];
  const out = [];
  for (let i = 1; i < list.length; i++) {
    const dt = (list[i].t - list[i - 1].t) / 1000;
    const dv = list[i][field] - list[i - 1][field];
    out.push({ t: list[i].t, v: dt > 0 && dv > 0 ? dv / dt : 0 });
  }
  return out;
}

export function latest(points) {
  return points.length ? points[points.length - 1].v : null;
}

// A line over the last WINDOW_SECONDS, scaled to its own maximum; `label` names it for
// screen readers.
export function sparkline(points, { width = 120, height = 28, label = "", kind = "ok" } = {}) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("class", `spark ${kind}`);
  svg.setAttribute("role", "img");
  const max = Math.max(0, ...points.map((p) => p.v));
  const now = latest(points);
  svg.setAttribute(
    "aria-label",
    `${label}: ${now === null ? "no data yet" : `${now.toFixed(1)}/s now, peak ${max.toFixed(1)}/s`} over the last ${WINDOW_SECONDS / 60} minutes at most`,
  );
  const title = document.createElementNS(SVG, "title");
  title.textContent = svg.getAttribute("aria-label");
  svg.append(title);
  const base = document.createElementNS(SVG, "line");
  base.setAttribute("x1", 0);
  base.setAttribute("x2", width);
  base.setAttribute("y1", height - 0.5);
  base.setAttribute("y2", height - 0.5);
  base.setAttribute("class", "base");
  svg.append(base);
  if (points.length < 1) return svg;
  // The last WINDOW_SECONDS, or less while the page has been open less long (at least 20 s),
  // so a new page's first points are not squeezed against the right edge.
  const end = points[points.length - 1].t;
  const span = Math.max(20000, Math.min(WINDOW_SECONDS * 1000, end - points[0].t));
  const x = (t) => width - ((end - t) / span) * width;
  const y = (v) => height - 2 - (max > 0 ? (v / max) * (height - 4) : 0);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" "));
  line.setAttribute("class", "line");
  // The latest point, visible even while it is the only one.
  const dot = document.createElementNS(SVG, "circle");
  dot.setAttribute("cx", x(end).toFixed(1));
  dot.setAttribute("cy", y(points[points.length - 1].v).toFixed(1));
  dot.setAttribute("r", 2);
  dot.setAttribute("class", "dot");
  svg.append(line, dot);
  return svg;
}
