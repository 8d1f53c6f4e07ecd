// The dead letters: filter by route, type, time and error text; view one; replay or drop one,
// a selection, or all that match, after a confirmation that states how many. Every action is
// the admin API's replay or drop with the letters' webhook ids, grouped by route, so exactly
// the letters counted in the confirmation are acted on.

import { Api, Unauthorized } from "./api.js";
import { h, replace, whenMs } from "./dom.js";

// JSON indented by its tokens, every number, string and escape left exactly as received
// (a parse and stringify would round large integers and rewrite escapes); null when the
// text is not a JSON object or array.
export function indentJson(text) {
  const t = text.trim();
  if (!(t.startsWith("{") || t.startsWith("["))) return null;
  try {
    JSON.parse(t);
  } catch {
    return null;
  }
  let out = "";
  let depth = 0;
  let inString = false;
  const newline = () => "\n" + "  ".repeat(depth);
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (inString) {
      out += c;
      if (c === "\\") {
        out += t[++i];
      } else if (c === '"') {
        inString = false;
      }
      continue;
    }
    if (c === '"') {
      inString = true;
      out += c;
    } else if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      let j = i + 1;
      while (j < t.length && /\s/.test(t[j])) j++;
      if (t[j] === close) {
        out += c + close;
        i = j;
      } else {
        depth++;
        out += c + newline();
      }
    } else if (c === "}" || c === "]") {
      depth--;
      out += newline() + c;
    } else if (c === ",") {
      out += "," + newline();
    } else if (c === ":") {
      out += ": ";
    } else if (!/\s/.test(c)) {
      out += c;
    }
  }
  return out;
}

const SHOWN_AT_MOST = 500;

const keyOf = (l) => `${l.route}/${l.seq}`;

// Asks before acting; resolves to true when confirmed. The dialog is modal: focus stays in it,
// Escape cancels.
export function confirmAction({ title, text, ok }) {
  const dialog = document.getElementById("confirm");
  const okButton = document.getElementById("confirm-ok");
  const cancelButton = document.getElementById("confirm-cancel");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  okButton.textContent = ok;
  return new Promise((resolve) => {
    const done = (value) => {
      okButton.onclick = null;
      cancelButton.onclick = null;
      dialog.oncancel = null;
      if (dialog.open) dialog.close();
      resolve(value);
    };
    okButton.onclick = () => done(true);
    cancelButton.onclick = () => done(false);
    dialog.oncancel = () => done(false);
    dialog.showModal();
    cancelButton.focus();
  });
}

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

// Replays or drops `letters` (after confirmation); returns a sentence saying what happened,
// or null when cancelled.
export async function act(action, letters) {
  const addressable = letters.filter((l) => l.webhook_id);
  const skipped = letters.length - addressable.length;
  if (addressable.length === 0) {
    return letters.length ? "These dead letters have no webhook id and cannot be picked one by one; use hookfan dead-letters with --route." : null;
  }
  const byRoute = new Map();
  for (const l of addressable) {
    if (!byRoute.has(l.route)) byRoute.set(l.route, []);
    byRoute.get(l.route).push(l.webhook_id);
  }
  const n = addressable.length;
  const routes = [...byRoute.entries()].map(([r, ids]) => `${r}: ${ids.length}`).join(", ");
  const verb = action === "replay" ? "Replay" : "Drop";
  const consequence =
    action === "replay"
      ? "They go back into their routes' queues and are delivered again from attempt 1."
      : "They are deleted from the spool and never delivered.";
  const confirmed = await confirmAction({
    title: `${verb} ${plural(n, "dead letter")}?`,
    text: `${verb} ${plural(n, "dead letter")} (${routes})? ${consequence}`,
    ok: `${verb} ${plural(n, "dead letter")}`,
  });
  if (!confirmed) return null;
  let done = 0;
  for (const [route, ids] of byRoute) {
    const answer = action === "replay" ? await Api.replay(route, ids) : await Api.drop(route, ids);
    done += answer.replayed ?? answer.dropped ?? 0;
  }
  const past = action === "replay" ? "replayed" : "dropped";
  const note = skipped ? ` (${plural(skipped, "letter")} without a webhook id left alone)` : "";
  return `${plural(done, "dead letter")} ${past}${note}.`;
}

function matches(letter, f) {
  if (f.route && letter.route !== f.route) return false;
  if (f.type && !(letter.event_type || "").toLowerCase().includes(f.type.toLowerCase())) return false;
  if (f.text && !letter.error.toLowerCase().includes(f.text.toLowerCase())) return false;
  if (f.after && letter.dead_at_ms < Date.parse(f.after)) return false;
  if (f.before && letter.dead_at_ms > Date.parse(f.before)) return false;
  return true;
}

// The dead-letters view; with `fixedRoute`, one route's letters only (the route page).
export class DeadLetters {
  constructor({ route = "", fixedRoute = null, onMessage }) {
    this.fixedRoute = fixedRoute;
    this.filters = { route: fixedRoute || route, type: "", text: "", after: "", before: "" };
    this.letters = [];
    this.selected = new Set();
    this.onMessage = onMessage;
    this.rendered = null;
  }

  async refresh() {
    this.letters = await Api.deadLetters(this.fixedRoute || undefined);
    const keys = new Set(this.letters.map(keyOf));
    for (const k of this.selected) if (!keys.has(k)) this.selected.delete(k);
    this.render();
  }

  matching() {
    return this.letters.filter((l) => matches(l, this.filters));
  }

  mount(parent, routeNames) {
    const field = (id, label, input) => h("div", { class: "field" }, h("label", { for: id }, label), input);
    const onInput = (key) => (e) => {
      this.filters[key] = e.target.value;
      this.render(true);
    };
    const routeSelect = h("select", { id: "filter-route", onchange: onInput("route") }, h("option", { value: "" }, "every route"));
    this.routeSelect = routeSelect;
    this.setRouteNames(routeNames);
    const filters = h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter dead letters", onsubmit: (e) => e.preventDefault() },
      this.fixedRoute ? null : field("filter-route", "Route", routeSelect),
      field("filter-type", "Event type contains", h("input", { id: "filter-type", type: "search", oninput: onInput("type") })),
      field("filter-text", "Error contains", h("input", { id: "filter-text", type: "search", oninput: onInput("text") })),
      field("filter-after", "Dead after", h("input", { id: "filter-after", type: "datetime-local", oninput: onInput("after") })),
      field("filter-before", "Dead before", h("input", { id: "filter-before", type: "datetime-local", oninput: onInput("before") })),
    );
    const run = (action, pick) => async () => {
      try {
        const message = await act(action, pick());
        if (message) {
          this.selected.clear();
          this.onMessage(message);
          await this.refresh();
        }
      } catch (e) {
        this.onMessage(e.message, true);
      }
    };
    const selectedLetters = () => this.letters.filter((l) => this.selected.has(keyOf(l)));
    this.summary = h("p", { class: "summary", "aria-live": "polite" });
    this.bar = h(
      "div",
      { class: "actions", role: "group", "aria-label": "Act on dead letters" },
      h("button", { type: "button", id: "replay-selected", onclick: run("replay", selectedLetters) }, "Replay selected"),
      h("button", { type: "button", id: "drop-selected", class: "danger", onclick: run("drop", selectedLetters) }, "Drop selected"),
      h("button", { type: "button", id: "replay-matching", onclick: run("replay", () => this.matching()) }, "Replay all matching"),
      h("button", { type: "button", id: "drop-matching", class: "danger", onclick: run("drop", () => this.matching()) }, "Drop all matching"),
    );
    this.table = h("div", { class: "table-wrap" });
    this.runOne = (action, letter) => run(action, () => [letter])();
    if (this.filters.route) routeSelect.value = this.filters.route;
    parent.append(filters, this.summary, this.bar, this.table);
  }

  setRouteNames(names) {
    if (!this.routeSelect) return;
    const have = [...this.routeSelect.options].map((o) => o.value).slice(1);
    const all = [...new Set([...names, ...this.letters.map((l) => l.route), this.filters.route].filter(Boolean))];
    if (have.join("\n") === all.join("\n")) return;
    const value = this.routeSelect.value || this.filters.route;
    replace(this.routeSelect, h("option", { value: "" }, "every route"), all.map((n) => h("option", { value: n }, n)));
    this.routeSelect.value = value;
  }

  // Rebuilds the table when what it shows changed (or `force`), so a refresh does not swap
  // elements out from under a pointer or a keyboard.
  render(force = false) {
    if (!this.table) return;
    const shown = this.matching();
    const signature = JSON.stringify([shown, [...this.selected], Math.floor(Date.now() / 30000)]);
    if (!force && signature === this.rendered) return;
    this.rendered = signature;
    const sel = this.selected.size;
    this.summary.textContent = `${shown.length} of ${plural(this.letters.length, "dead letter")} match${sel ? `; ${sel} selected` : ""}.`;
    for (const b of this.bar.querySelectorAll("button")) {
      b.disabled = b.id.endsWith("selected") ? sel === 0 : shown.length === 0;
    }
    if (this.letters.length === 0) {
      replace(this.table, h("p", { class: "empty" }, "No dead letters."));
      return;
    }
    const allShownSelected = shown.length > 0 && shown.every((l) => this.selected.has(keyOf(l)));
    const head = h(
      "tr",
      {},
      h(
        "th",
        { scope: "col" },
        h("input", {
          type: "checkbox",
          "aria-label": "Select every matching dead letter",
          "data-key": "select-all",
          checked: allShownSelected,
          onchange: (e) => {
            for (const l of shown) e.target.checked ? this.selected.add(keyOf(l)) : this.selected.delete(keyOf(l));
            this.render(true);
          },
        }),
      ),
      ["Route", "Webhook id", "Event type", "Dead", "Attempts", "Last error", "Actions"].map((c) => h("th", { scope: "col" }, c)),
    );
    const rows = shown.slice(0, SHOWN_AT_MOST).map((l) => {
      const k = keyOf(l);
      return h(
        "tr",
        { "data-letter": k, "data-webhook-id": l.webhook_id || "" },
        h(
          "td",
          {},
          h("input", {
            type: "checkbox",
            "aria-label": `Select dead letter ${l.webhook_id || k}`,
            "data-key": `select ${k}`,
            checked: this.selected.has(k),
            disabled: !l.webhook_id,
            onchange: (e) => {
              e.target.checked ? this.selected.add(k) : this.selected.delete(k);
              this.render(true);
            },
          }),
        ),
        h("td", {}, h("a", { href: `#/routes/${encodeURIComponent(l.route)}` }, l.route)),
        h("td", { class: "mono" }, l.webhook_id || "–"),
        h("td", {}, l.event_type || "–"),
        h("td", {}, whenMs(l.dead_at_ms)),
        h("td", { class: "num" }, l.attempts),
        h("td", {}, h("div", { class: "error clamp", title: l.error }, l.error)),
        h(
          "td",
          { class: "row-actions" },
          h("button", { type: "button", class: "view", "data-key": `view ${k}`, onclick: () => this.view(l) }, "View"),
          h("button", { type: "button", class: "replay", "data-key": `replay ${k}`, disabled: !l.webhook_id, onclick: () => this.runOne("replay", l) }, "Replay"),
          h("button", { type: "button", class: "drop danger", "data-key": `drop ${k}`, disabled: !l.webhook_id, onclick: () => this.runOne("drop", l) }, "Drop"),
        ),
      );
    });
    const more = shown.length > SHOWN_AT_MOST ? h("p", { class: "hint" }, `Showing the first ${SHOWN_AT_MOST}; narrow the filters to see the rest.`) : null;
    replace(
      this.table,
      h("table", { class: "letters" }, h("caption", { class: "visually-hidden" }, "Dead letters"), h("thead", {}, head), h("tbody", {}, rows)),
      more,
    );
  }

  // One letter's record, attempts and body (read from the spool when opened), with its own
  // replay and drop.
  view(letter) {
    const dialog = document.getElementById("letter");
    document.getElementById("letter-title").textContent = `Dead letter ${letter.webhook_id || keyOf(letter)}`;
    const fact = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
    const facts = (full) => replace(
      document.getElementById("letter-facts"),
      fact("Route", letter.route),
      fact("Webhook id", letter.webhook_id || "–"),
      fact("Event type", letter.event_type || "–"),
      fact("Attempts", String(letter.attempts)),
      fact("Received", whenMs(letter.received_at_ms)),
      fact("Dead since", whenMs(letter.dead_at_ms)),
      fact("Last error", h("span", { class: "error-text" }, letter.error)),
      full ? fact("Posted to", full.path || "/") : null,
      full ? fact("API key", full.api_key || "–") : null,
    );
    const body = document.getElementById("letter-json");
    const note = document.getElementById("letter-body-note");
    facts(null);
    body.textContent = "";
    note.textContent = "Reading the body from the spool…";
    this.viewing = letter;
    this.showBody(letter, facts, body, note);
    const replay = document.getElementById("letter-replay");
    const drop = document.getElementById("letter-drop");
    const close = document.getElementById("letter-close");
    const closeThen = (action) => () => {
      dialog.close();
      this.runOne(action, letter);
    };
    replay.disabled = drop.disabled = !letter.webhook_id;
    replay.onclick = closeThen("replay");
    drop.onclick = closeThen("drop");
    close.onclick = () => dialog.close();
    dialog.showModal();
    close.focus();
  }

  // Fills the open dialog with the letter's body: JSON indented, other text as it is,
  // bytes that are not text as base64.
  async showBody(letter, facts, body, note) {
    let full;
    try {
      full = await Api.deadLetter(letter.route, letter.seq);
    } catch (e) {
      if (this.viewing !== letter) return;
      if (e instanceof Unauthorized) {
        // Signed out meanwhile: the next refresh shows the sign-in, which this dialog
        // would cover.
        document.getElementById("letter").close();
        return;
      }
      note.textContent = `The body could not be read: ${e.message}`;
      return;
    }
    // Another letter opened meanwhile: this answer is not for the dialog any more.
    if (this.viewing !== letter) return;
    facts(full);
    if (full.body != null) {
      const bytes = new TextEncoder().encode(full.body).length;
      const indented = indentJson(full.body);
      note.textContent = indented === null
        ? `${bytes} bytes of text, as received.`
        : `${bytes} bytes of JSON, as received (indented here; nothing else changed).`;
      body.textContent = indented === null ? full.body : indented;
    } else if (full.body_base64 != null) {
      note.textContent = "The body is not text; here in base64.";
      body.textContent = full.body_base64;
    } else {
      note.textContent = "The event's record is gone from the spool.";
    }
  }
}
