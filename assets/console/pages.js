// The console's pages. Each has mount(main) (built once per visit) and refresh(ctx) (every
// poll, ctx.routes being the latest GET /api/routes), and updates only what changed.

import { Api, Unauthorized } from "./api.js";
import { latest, rates, sparkline } from "./charts.js";
import { DeadLetters } from "./deadletters.js";
import { age, h, rate, replace, retime, when, whenMs } from "./dom.js";

function state(r) {
  if (r.destination === "removed from the config") return ["removed", "Removed from the config"];
  if (!r.enabled) return ["disabled", "Disabled"];
  const recent = r.last_error_at && Date.now() - Date.parse(r.last_error_at) < 60000;
  if (r.pending > 0 && recent) return ["failing", "Failing"];
  return ["ok", "Delivering"];
}

function badge(r) {
  const [kind, text] = state(r);
  return h("span", { class: `badge ${kind}` }, text);
}

function routeLink(name) {
  return h("a", { href: `#/routes/${encodeURIComponent(name)}`, "data-key": `route ${name}` }, name);
}

function chartCell(r, field, size) {
  const points = rates(r.name, field);
  return [
    sparkline(points, { ...size, label: `${field} per second, ${r.name}`, kind: field === "failed" ? "bad" : "ok" }),
    h("span", { class: "rate" }, `${rate(latest(points))}/s`),
  ];
}

function lastError(r) {
  if (!r.last_error) return h("span", { class: "muted" }, "none");
  return [h("div", { class: "error clamp", title: r.last_error }, r.last_error), h("span", { class: "muted" }, when(r.last_error_at))];
}

// What became of an event after a failed attempt.
function then(t) {
  if (t.kind === "dead_letter") return h("span", { class: "badge failing" }, "Dead letter");
  const verb = t.kind === "hold" ? "Held, tried again" : "Tried again";
  return `${verb} in ${age(t.in_ms / 1000)}`;
}

// A route's recent failed attempts, newest first: when, which webhook, the destination's
// answer, and what came of it.
function failuresTable(failures) {
  if (!failures.length) return h("p", { class: "muted" }, "No failed attempt since start.");
  return h(
    "table",
    { class: "failures" },
    h("caption", { class: "visually-hidden" }, "Recent failed attempts"),
    h("thead", {}, h("tr", {}, ["When", "Webhook id", "Type", "Attempt", "Destination's answer", "Then"].map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      failures.map((f) =>
        h(
          "tr",
          { "data-webhook-id": f.webhook_id || "" },
          h("td", {}, whenMs(f.at_ms)),
          h("td", { class: "mono" }, f.webhook_id || "–"),
          h("td", {}, f.event_type || "–"),
          h("td", { class: "num" }, String(f.attempt)),
          h("td", {}, h("div", { class: "error answer" }, f.error)),
          h("td", { class: "then" }, then(f.then)),
        ),
      ),
    ),
  );
}

// Rows keyed by route name: a row is created once and its cells updated, so links and
// buttons stay the same elements across refreshes.
function keyedRows(tbody, items, key, create, update) {
  const existing = new Map([...tbody.children].map((tr) => [tr.dataset.row, tr]));
  let previous = null;
  for (const item of items) {
    const k = key(item);
    let tr = existing.get(k);
    existing.delete(k);
    if (!tr) {
      tr = create(item);
      tr.dataset.row = k;
    }
    update(tr, item);
    const next = previous ? previous.nextSibling : tbody.firstChild;
    if (tr !== next) tbody.insertBefore(tr, next);
    previous = tr;
  }
  for (const gone of existing.values()) gone.remove();
}

function setCell(td, ...content) {
  const text = content.flat(Infinity).map((c) => (c instanceof Node ? c.outerHTML ?? c.textContent : String(c))).join("");
  if (td.dataset.was === text) return;
  td.dataset.was = text;
  replace(td, ...content);
}

export function routesPage() {
  let tbody;
  let empty;
  const columns = ["Route", "Destination", "State", "Pending", "Oldest pending", "In flight", "Delivered/s", "Failed/s", "Dead letters", "Last error"];
  const cls = ["name", "destination", "state", "pending", "oldest", "in-flight", "delivered", "failed", "dead", "last-error"];
  return {
    title: "Routes",
    mount(main) {
      tbody = h("tbody");
      empty = h("p", { class: "empty", hidden: true }, "No routes.");
      main.append(
        h("h1", {}, "Routes"),
        h("p", { class: "hint" }, "Refreshed every 2 seconds. Rates are computed in this page from the counters, over the last 5 minutes it was open."),
        h("div", { class: "table-wrap" }, h("table", { class: "routes" }, h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))), tbody)),
        empty,
      );
    },
    async refresh({ routes }) {
      empty.hidden = routes.length > 0;
      keyedRows(
        tbody,
        routes,
        (r) => r.name,
        (r) => h("tr", { "data-route": r.name }, cls.map((c) => h("td", { class: c }))),
        (tr, r) => {
          const td = (c) => tr.querySelector(`td.${c}`);
          setCell(td("name"), routeLink(r.name));
          setCell(td("destination"), h("span", { class: "kind" }, r.destination), " ", h("span", { class: "target mono" }, r.target));
          setCell(td("state"), badge(r));
          setCell(td("pending"), String(r.pending));
          setCell(td("oldest"), age(r.oldest_pending_age_seconds));
          setCell(td("in-flight"), String(r.in_flight));
          replace(td("delivered"), chartCell(r, "delivered"));
          replace(td("failed"), chartCell(r, "failed"));
          setCell(
            td("dead"),
            r.dead_letters > 0
              ? h("a", { href: `#/dead-letters?route=${encodeURIComponent(r.name)}`, "data-key": `dead ${r.name}` }, String(r.dead_letters))
              : "0",
          );
          setCell(td("last-error"), lastError(r));
        },
      );
    },
  };
}

export function routePage(name, ctx) {
  let facts;
  let charts;
  let failures;
  // What the failures box shows now: it is rebuilt only when that changes (otherwise only
  // its "… ago" times move on), so a reader's text selection in it (an error to copy)
  // survives the polls.
  let failuresShown;
  const showFailures = (what, build) => {
    if (what === failuresShown) return retime(failures);
    failuresShown = what;
    replace(failures, build());
  };
  const letters = new DeadLetters({ fixedRoute: name, onMessage: ctx.message });
  return {
    title: `Route ${name}`,
    mount(main) {
      facts = h("dl", { class: "facts" });
      charts = h("div", { class: "charts" });
      failures = h("div", { class: "recent-failures" });
      failuresShown = undefined;
      const lettersSection = h("section", { "aria-labelledby": "route-letters" }, h("h2", { id: "route-letters" }, "Its dead letters"));
      main.append(
        h("p", {}, h("a", { href: "#/routes" }, "← All routes")),
        h("h1", {}, `Route ${name}`),
        facts,
        h("h2", {}, "Last minutes"),
        charts,
        h("h2", {}, "Recent failed attempts"),
        failures,
        lettersSection,
      );
      letters.mount(lettersSection, [name]);
    },
    async refresh({ routes }) {
      const r = routes.find((x) => x.name === name);
      if (!r) {
        replace(facts, h("p", { class: "empty" }, `No route named ${name} is configured or holds events.`));
      } else {
        const fact = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
        replace(
          facts,
          fact("State", badge(r)),
          fact("Destination", `${r.destination} ${r.target}`),
          fact("Event types", r.event_types),
          fact("Pending", String(r.pending)),
          fact("Oldest pending", age(r.oldest_pending_age_seconds)),
          fact("In flight", String(r.in_flight)),
          fact("Delivered since start", String(r.delivered)),
          fact("Failed attempts since start", String(r.failed)),
          fact("Dead letters", String(r.dead_letters)),
        );
        const big = { width: 360, height: 80 };
        replace(
          charts,
          h("figure", {}, chartCell(r, "delivered", big), h("figcaption", {}, "Delivered per second")),
          h("figure", {}, chartCell(r, "failed", big), h("figcaption", {}, "Failed attempts per second")),
        );
        if (r.destination === "removed from the config" || !r.enabled) {
          const why = r.enabled ? "removed from the config" : "disabled";
          showFailures(`not running: ${why}`, () => h("p", { class: "muted" }, `Not running: ${why}.`));
        } else {
          try {
            const list = await Api.failures(name);
            showFailures(JSON.stringify(list), () => failuresTable(list));
          } catch (e) {
            if (e instanceof Unauthorized) throw e;
            showFailures(`error: ${e.message}`, () => h("p", { class: "error-text" }, `Could not read its failures: ${e.message}`));
          }
        }
      }
      await letters.refresh();
    },
  };
}

export function deadLettersPage(route, ctx) {
  const letters = new DeadLetters({ route, onMessage: ctx.message });
  return {
    title: "Dead letters",
    mount(main) {
      main.append(
        h("h1", {}, "Dead letters"),
        h("p", { class: "hint" }, "Events a route gave up on. Replay puts them back in their route's queue (from attempt 1); drop deletes them."),
      );
      letters.mount(main, []);
    },
    async refresh({ routes }) {
      letters.setRouteNames(routes.map((r) => r.name));
      await letters.refresh();
      letters.setRouteNames(routes.map((r) => r.name));
    },
  };
}

export function sourcesPage() {
  let body;
  let shown = null;
  return {
    title: "Sources",
    mount(main) {
      body = h("div");
      main.append(h("h1", {}, "Sources and passthrough paths"), body);
    },
    async refresh() {
      const [sources, config] = await Promise.all([Api.sources(), Api.config()]);
      const signature = JSON.stringify([sources, config.passthrough]);
      if (signature === shown) return;
      shown = signature;
      const table = (cols, rows) =>
        h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows)));
      replace(
        body,
        h("h2", {}, "Sources (SQS)"),
        sources.length === 0
          ? h("p", { class: "empty" }, "No sources configured.")
          : table(
              ["Source", "Queue", "Running", "Received", "Stored", "Duplicates", "Unrouted", "Undecodable", "In flight", "Queue messages", "Last error"],
              sources.map((s) =>
                h(
                  "tr",
                  { "data-source": s.name },
                  h("td", {}, s.name),
                  h("td", { class: "mono" }, s.queue_url),
                  h("td", {}, s.running ? "yes" : "no (removed)"),
                  [s.received, s.stored, s.duplicates, s.unrouted, s.undecodable, s.in_flight].map((n) => h("td", { class: "num" }, String(n))),
                  h("td", { class: "num" }, s.queue_messages ?? "–"),
                  h("td", {}, s.last_error ? [h("div", { class: "error clamp", title: s.last_error }, s.last_error), when(s.last_error_at)] : h("span", { class: "muted" }, "none")),
                ),
              ),
            ),
        h("h2", {}, "Passthrough paths (synchronous hooks)"),
        config.passthrough.length === 0
          ? h("p", { class: "empty" }, "No passthrough paths configured.")
          : table(
              ["Path", "Handler", "Timeout", "Concurrency"],
              config.passthrough.map((p) =>
                h("tr", {}, h("td", { class: "mono" }, p.path), h("td", { class: "mono" }, p.url), h("td", {}, p.timeout ?? "Stream's deadline"), h("td", { class: "num" }, String(p.concurrency))),
              ),
            ),
      );
    },
  };
}

export function configPage() {
  let body;
  let shown = null;
  return {
    title: "Config",
    mount(main) {
      body = h("div");
      main.append(
        h("h1", {}, "Running config"),
        h("p", { class: "hint" }, "As hookfan runs it now (a reload of routes.yaml shows here by itself). Secrets are shown as ***."),
        body,
      );
    },
    async refresh() {
      const config = await Api.config();
      const text = JSON.stringify(config, null, 2);
      if (text === shown) return;
      shown = text;
      const fact = (k, v) => [h("dt", {}, k), h("dd", { class: "mono" }, v === null || v === undefined ? "–" : String(v))];
      const keys = ["listen", "admin_listen", "admin_token", "data_dir", "max_body_bytes", "dedup_window", "shutdown_grace", "max_event_age", "request_timeout", "max_connections"];
      replace(
        body,
        h("dl", { class: "facts" }, keys.map((k) => fact(k, config[k]))),
        h("h2", {}, "Routes"),
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "config-routes" },
            h("thead", {}, h("tr", {}, ["Route", "Enabled", "Event types", "Paths", "Destination"].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              config.routes.map((r) =>
                h("tr", { "data-route": r.name }, h("td", {}, r.name), h("td", {}, r.enabled ? "yes" : "no"), h("td", {}, r.event_types), h("td", {}, r.paths), h("td", { class: "mono" }, `${r.destination}: ${JSON.stringify(r[r.destination])}`)),
              ),
            ),
          ),
        ),
        h("h2", {}, "Everything, as JSON"),
        h("pre", { class: "json", id: "config-json", tabindex: "0" }, text),
      );
    },
  };
}
