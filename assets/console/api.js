// The admin API, as the CLI uses it. The token lives in sessionStorage (this tab only, gone
// when it closes) and travels only in the Authorization header: never in a URL, never logged.

const TOKEN_KEY = "hookfan.admin-token";

export class Unauthorized extends Error {}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const stored = token();
  if (stored) headers.Authorization = `Bearer ${stored}`;
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(path, init);
  if (answer.status === 401) {
    throw new Unauthorized(stored ? "The admin token was refused." : "This hookfan needs its admin token.");
  }
  if (!answer.ok) {
    const text = (await answer.text()).trim();
    throw new Error(`${method} ${path} answered ${answer.status}: ${text}`);
  }
  return answer.json();
}

// A selection as the API takes it: one route (or every route) and, optionally, webhook ids.
function query(route, ids) {
  const parts = [];
  if (route) parts.push(`route=${encodeURIComponent(route)}`);
  if (ids && ids.length) parts.push(`id=${ids.map(encodeURIComponent).join(",")}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

export const Api = {
  routes: () => call("GET", "/api/routes"),
  sources: () => call("GET", "/api/sources"),
  // A running route's last failed attempts, newest first.
  failures: (route) => call("GET", `/api/routes/${encodeURIComponent(route)}/failures`),
  config: () => call("GET", "/api/config"),
  deadLetters: (route) => call("GET", `/api/dead-letters${query(route)}`),
  // One dead letter with its event as stored: path, API key, body (text or base64).
  deadLetter: (route, seq) => call("GET", `/api/dead-letters/${encodeURIComponent(route)}/${seq}`),
  // `ids` empty means every dead letter of `route` (of every route without one): callers
  // that mean a selection always pass ids.
  replay: (route, ids) => {
    const body = {};
    if (route) body.route = route;
    if (ids && ids.length) body.ids = ids;
    return call("POST", "/api/dead-letters/replay", body);
  },
  drop: (route, ids) => call("DELETE", `/api/dead-letters${query(route, ids)}`),
};
