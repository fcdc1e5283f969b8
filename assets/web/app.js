// The studio's shell: login, navigation between views (hash routes), who is signed in.
import { api, ApiError, uploadLimit } from "./api.js";
import { clearErrors, h, showError } from "./ui.js";
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

async function route() {
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  const view = views[name] ? name : "new";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (cleanup) { cleanup(); cleanup = null; }
  main.replaceChildren();
  try {
    cleanup = (await views[view](main, arg, session.current)) || null;
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      main.replaceChildren(h("div", { class: "card form-error", role: "alert" }, refusal(e)));
    }
  }
}

function showLogin(show) {
  document.getElementById("login").hidden = !show;
  main.hidden = show;
  // Nothing behind the links answers until a key is given.
  document.querySelector("nav").hidden = show;
  if (show) document.getElementById("login-key").focus();
}

async function start() {
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
  await route();
}

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  clearErrors(form);
  const input = document.getElementById("login-key");
  try {
    await api("POST", "/api/v1/session", { key: input.value });
    input.value = "";
    await start();
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
window.addEventListener("hashchange", () => { if (session.current) route(); });
start();
