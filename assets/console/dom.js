// Small DOM helpers: every node is built with createElement and textContent, never from HTML
// strings, so text that came from the API (error messages, event types) cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Replaces the children of `el`, keeping focus on the element with the same data-key (a
// refresh must not pull focus away from a keyboard user).
export function replace(el, ...children) {
  const active = document.activeElement;
  const key = active && el.contains(active) ? active.dataset.key : undefined;
  el.replaceChildren();
  append(el, children);
  if (key !== undefined) {
    const again = el.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

export function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

// "3 min ago" for an RFC 3339 time, with the exact time as a tooltip.
export function when(rfc3339) {
  if (!rfc3339) return "–";
  const t = Date.parse(rfc3339);
  const ago = Math.max(0, (Date.now() - t) / 1000);
  return h("time", { datetime: rfc3339, title: new Date(t).toLocaleString() }, `${age(ago)} ago`);
}

// Brings the "… ago" of every `when` inside `el` up to now, in place.
export function retime(el) {
  for (const t of el.querySelectorAll("time[datetime]")) {
    const text = `${age(Math.max(0, (Date.now() - Date.parse(t.dateTime)) / 1000))} ago`;
    if (t.textContent !== text) t.textContent = text;
  }
}

export function whenMs(ms) {
  return when(new Date(ms).toISOString());
}

export function rate(x) {
  if (x === null || x === undefined) return "–";
  return x >= 10 ? x.toFixed(0) : x.toFixed(1);
}
