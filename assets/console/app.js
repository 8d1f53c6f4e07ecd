// The console's shell: hash routing, one poll every 2 s (GET /api/routes feeds the charts
// whatever page is open, then the open page refreshes), the sign-in page, the status line.

import { Api, Unauthorized, clearToken, setToken, token } from "./api.js";
import { record } from "./charts.js";
import { h, replace } from "./dom.js";
import { configPage, deadLettersPage, routePage, routesPage, sourcesPage } from "./pages.js";

const POLL_MS = 2000;
const main = document.getElementById("main");
const statusLine = document.getElementById("status");
const signOut = document.getElementById("sign-out");

let page = null;
let signingIn = false;
let timer = null;
let ticking = false;
let again = false;
let note = null;

function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

// A message from an action (replayed, dropped, refused) stays up for a while over the
// "updated" line.
function message(text, isError = false) {
  note = { text, isError, until: Date.now() + 8000 };
  say(text, isError);
}

function route() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, q = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(q);
  const ctx = { message };
  switch (parts[0]) {
    case "dead-letters":
      return ["dead-letters", deadLettersPage(params.get("route") || "", ctx)];
    case "sources":
      return ["sources", sourcesPage(ctx)];
    case "config":
      return ["config", configPage(ctx)];
    case "routes":
      if (parts[1]) return ["routes", routePage(parts[1], ctx)];
      return ["routes", routesPage(ctx)];
    default:
      return ["routes", routesPage(ctx)];
  }
}

function open() {
  if (signingIn) return;
  const [nav, next] = route();
  page = next;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${page.title} · hookfan`;
  main.replaceChildren();
  page.mount(main);
  tick();
}

function showSignIn(why) {
  signingIn = true;
  page = null;
  signOut.hidden = true;
  say(why, true);
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const error = h("p", { class: "error", role: "alert" }, token() ? why : "");
  const form = h(
    "form",
    {
      class: "sign-in",
      onsubmit: async (e) => {
        e.preventDefault();
        setToken(input.value);
        try {
          await Api.routes();
        } catch (err) {
          clearToken();
          error.textContent = err instanceof Unauthorized ? "That token was refused." : err.message;
          input.select();
          return;
        }
        signingIn = false;
        signOut.hidden = false;
        open();
      },
    },
    h("h1", {}, "Sign in"),
    h("p", {}, "This hookfan's admin API needs its admin_token (set in routes.yaml). It is kept in this tab only, until the tab closes."),
    h("label", { for: "token" }, "Admin token"),
    input,
    h("button", { type: "submit", id: "sign-in" }, "Sign in"),
    error,
  );
  replace(main, form);
  input.focus();
}

// One poll: routes (for the charts), then the open page. Never two at once.
async function tick() {
  clearTimeout(timer);
  if (ticking) {
    again = true;
    return;
  }
  ticking = true;
  try {
    const routes = await Api.routes();
    record(routes);
    if (page && !signingIn) await page.refresh({ routes });
    if (note && Date.now() < note.until) say(note.text, note.isError);
    else say(`Updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    if (e instanceof Unauthorized) {
      showSignIn(e.message);
    } else {
      say(`Cannot reach hookfan: ${e.message}`, true);
    }
  } finally {
    ticking = false;
    if (!signingIn) timer = setTimeout(tick, again ? 0 : POLL_MS);
    again = false;
  }
}

signOut.addEventListener("click", () => {
  clearToken();
  showSignIn("Signed out.");
});
signOut.hidden = !token();
window.addEventListener("hashchange", open);
open();
