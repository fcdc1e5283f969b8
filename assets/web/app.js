// The studio's shell: login, navigation between views (hash routes), who is signed in.
import { api, ApiError, uploadLimit } from "./api.js";
import { clearErrors, focusHeading, h, showError } from "./ui.js";
import { refusal } from "./words.js";
import { newFilm } from "./film.js";
import { picture } from "./picture.js";
import { photo } from "./photo.js";
import { speech } from "./speech.js";
import { watch } from "./watch.js";
import { library } from "./library.js";
import { profiles } from "./profiles.js";
import { box } from "./box.js";

const views = { new: newFilm, picture, photo, speech, watch, library, profiles, box };
const main = document.getElementById("view");
/** Who is signed in (`/api/v1/session`), shared with the views. */
export const session = { current: null };
let cleanup = null;

/** The page's title: what it shows, then the studio's name (read first by a screen reader). */
const TITLE = "reelbox studio";

/**
 * Shows the view the address names. `moved`: the person got here by an action (a link,
 * logging in, a submitted form), so focus goes to the new view's heading; on a fresh load
 * the page is read from its start.
 */
async function route(moved) {
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  const view = views[name] ? name : "new";
  let link = null;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === view) { a.setAttribute("aria-current", "page"); link = a; }
    else a.removeAttribute("aria-current");
  }
  document.title = link ? `${link.textContent} · ${TITLE}` : TITLE;
  if (cleanup) { cleanup(); cleanup = null; }
  main.replaceChildren();
  try {
    cleanup = (await views[view](main, arg, session.current)) || null;
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      main.replaceChildren(h("div", { class: "card form-error", role: "alert" }, refusal(e)));
    }
  }
  if (moved && !main.contains(document.activeElement)) focusHeading(main);
}

function showLogin(show) {
  if (show) document.title = `Log in · ${TITLE}`;
  document.getElementById("login").hidden = !show;
  main.hidden = show;
  // Nothing behind the links answers until a key is given.
  document.querySelector("nav").hidden = show;
  if (show) document.getElementById("login-key").focus();
}

async function start(moved = false) {
  try {
    session.current = await api("GET", "/api/v1/session");
    uploadLimit.bytes = session.current.max_upload_bytes || 0;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { showLogin(true); return; }
    throw e;
  }
  showLogin(false);
  const who = document.getElementById("who");
  document.getElementById("who-label").textContent =
    session.current.label + (session.current.admin ? " (admin)" : "");
  who.hidden = false;
  document.getElementById("logout").hidden = !session.current.keys_required;
  await route(moved);
}

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  clearErrors(form);
  const input = document.getElementById("login-key");
  try {
    await api("POST", "/api/v1/session", { key: input.value });
    input.value = "";
    await start(true);
  } catch (e) {
    showError(form, e, { key: "login-key" });
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  await api("DELETE", "/api/v1/session");
  session.current = null;
  document.getElementById("who").hidden = true;
  if (cleanup) { cleanup(); cleanup = null; }
  main.replaceChildren();
  showLogin(true);
});

window.addEventListener("reelbox:login", () => {
  if (session.current && session.current.keys_required) {
    // The session ended (expired, logged out elsewhere, the daemon restarted): stop the
    // view's streams and timers; logging in again shows it afresh.
    session.current = null;
    document.getElementById("who").hidden = true;
    if (cleanup) { cleanup(); cleanup = null; }
    showLogin(true);
  }
});
window.addEventListener("hashchange", () => { if (session.current) route(true); });
start();
