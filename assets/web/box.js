// Box: the devices with live telemetry sparklines, the queue, installed and available
// models; admins can pull a model and watch it come in, and remove one to free its disk.
import { api, waitJob } from "./api.js";
import { busy, bytes, h, isBusy, say, sparkline, summary } from "./ui.js";
import { kindWord } from "./words.js";

const KEEP = 120;

function gauge(label) {
  const canvas = h("canvas", { class: "spark", role: "img", "aria-label": `${label} over the last minutes` });
  const value = h("span", { class: "value" }, "–");
  return { el: h("div", { class: "gauge" }, h("span", { class: "label" }, label), value, canvas), canvas, value, data: [] };
}

/**
 * An installed model's Remove button and where it says what went wrong: asks first, and
 * again, naming the jobs, when queued or running jobs run the model (they fail without it).
 * The profiles that named it are said, since their renders are refused until they name
 * another.
 */
function removal(m, cell, said) {
  const remove = h("button", { type: "button", class: "secondary", "aria-label": `Remove ${m.name}` }, "Remove");
  const why = h("div", { class: "form-error", role: "alert" });
  const named = h("p", { class: "hint" });
  remove.addEventListener("click", async () => {
    if (isBusy(remove)) return;
    const size = m.size ? ` (${bytes(m.size)})` : "";
    if (!confirm(`Remove ${m.name}${size} from this box? Films and pictures that use it can no longer be made until it is pulled or imported again.`)) return;
    busy(remove, true); why.replaceChildren(); named.replaceChildren();
    const path = `/api/v1/models/${encodeURIComponent(m.name)}`;
    try {
      let done;
      try {
        done = await api("DELETE", path);
      } catch (e) {
        if (e.code !== "model_in_use" || !confirm(`${e.message}\n\nRemove it anyway? Those jobs fail.`)) throw e;
        done = await api("DELETE", `${path}?force=true`);
      }
      cell.firstChild.textContent = "removed";
      remove.remove();
      said.textContent = `${m.name} removed.`;
      if (done.profiles.length) {
        named.textContent = `Profiles that name it: ${done.profiles.map((p) => `${p.name} (${p.field.replace("_", " ")})`).join(", ")}. Their films are refused until they name another model (Profiles).`;
      }
    } catch (e) {
      say(why, e);
      busy(remove, false);
    }
  });
  return [remove, why, named];
}

/** Renders the Box view into `root`. */
export async function box(root, _arg, me) {
  const [system, models, running, queued] = await Promise.all([
    api("GET", "/api/v1/system"), api("GET", "/api/v1/models"),
    api("GET", "/api/v1/jobs?state=running&limit=50"), api("GET", "/api/v1/jobs?state=queued&limit=50"),
  ]);
  const gauges = new Map();
  const devices = h("div", { class: "devices" });
  const addGauge = (key, label) => {
    if (!gauges.has(key)) { const g = gauge(label); gauges.set(key, g); devices.append(g.el); }
    return gauges.get(key);
  };
  const push = (key, label, v, text, max = 100) => {
    const g = addGauge(key, label);
    g.data.push(v);
    if (g.data.length > KEEP) g.data.shift();
    g.value.textContent = text;
    sparkline(g.canvas, g.data, max);
  };
  const sample = (s) => {
    for (const g of s.gpus) {
      push(`gpu${g.index}`, `GPU ${g.index} ${g.name}`, g.util_gpu, g.util_gpu == null ? "–" : `${g.util_gpu} %`);
      if (g.mem_total_mib) push(`mem${g.index}`, `GPU ${g.index} memory`, (100 * g.mem_used_mib) / g.mem_total_mib,
        `${g.mem_used_mib} / ${g.mem_total_mib} MiB`);
    }
    if (s.host.cpu_percent != null) push("cpu", `CPU (${s.host.cpus} cores)`, s.host.cpu_percent, `${Math.round(s.host.cpu_percent)} %`);
    if (s.host.mem_total_mib) push("ram", "RAM", (100 * s.host.mem_used_mib) / s.host.mem_total_mib,
      `${s.host.mem_used_mib} / ${s.host.mem_total_mib} MiB`);
  };
  const telemetry = new EventSource("/api/v1/telemetry");
  telemetry.addEventListener("history", (ev) => JSON.parse(ev.data).samples.forEach(sample));
  telemetry.addEventListener("sample", (ev) => sample(JSON.parse(ev.data)));

  const q = system.queue.by_state;
  const jobs = [...running.jobs, ...queued.jobs];
  const queue = h("section", { class: "card" }, h("h2", {}, "Queue"),
    h("p", {}, `${q.running} running, ${q.queued} queued${system.paused ? " (paused)" : ""}; ${q.succeeded} done, ${q.failed} failed.`),
    jobs.length ? h("ul", { class: "jobs" }, jobs.map((j) => h("li", {},
      h("a", { href: `#/watch/${j.id}` }, `${kindWord(j.kind)} · ${j.state} · ${Math.floor(j.progress.fraction * 100)} % · ${summary(j, 60)}`)))) : null);

  // Below the floor the daemon holds and refuses work (507): say so where the owner looks.
  const disk = system.disk || {};
  const diskLine = (what, space) => space ? `${what}: ${bytes(space.free_bytes)} free of ${bytes(space.total_bytes)}` : null;
  const low = [["data", disk.data], ["models", disk.models]]
    .filter(([, s]) => s && disk.min_free_bytes && s.free_bytes < disk.min_free_bytes).map(([w]) => w);
  const disks = h("section", { class: "card" }, h("h2", {}, "Disk"),
    h("p", {}, [diskLine("Films and uploads", disk.data), diskLine("Models", disk.models)].filter(Boolean).join("; ") || "–"),
    low.includes("data") ? h("p", { class: "form-error", role: "alert" },
      `The disk of films and uploads has less than the ${bytes(disk.min_free_bytes)} kept free: queued jobs wait and new jobs and uploads are refused. Delete finished jobs in the Library to free space.`) : null,
    low.includes("models") ? h("p", { class: "form-error", role: "alert" },
      `The disk of models has less than the ${bytes(disk.min_free_bytes)} kept free: model pulls are refused. Remove models you no longer use (Remove, below).`) : null);

  // How a pull went, said (its row's cell changes quietly).
  const pulled = h("p", { class: "sr-only", role: "status" });
  const rows = models.models.map((m) => {
    // On a head, the live worker boxes that have it too.
    const on = (m.boxes || []).length ? `; on ${m.boxes.join(", ")}` : "";
    const cell = h("td", {}, m.state.replace("_", " "), on);
    if (me && me.admin && m.state !== "installed" && m.sources.length) {
      // Named with its model: a screen reader's list of buttons is otherwise "Pull, Pull, Pull…".
      const pull = h("button", { type: "button", class: "secondary", "aria-label": `Pull ${m.name}` }, "Pull");
      const bar = h("progress", { max: 1, value: 0, hidden: true, "aria-label": `Pulling ${m.name}` });
      // Why a pull did not work, in plain words with the daemon's message under "Details".
      const why = h("div", { class: "form-error", role: "alert" });
      pull.addEventListener("click", async () => {
        if (isBusy(pull)) return;
        // Non-commercial licences are accepted once, as `reelbox models pull --accept-license` does.
        const accept = m.noncommercial;
        if (accept && !confirm(`${m.name} is under the ${m.license} licence, which allows non-commercial use only. Accept it and pull?`)) return;
        busy(pull, true); bar.hidden = false; why.replaceChildren();
        pulled.textContent = `Pulling ${m.name}…`;
        try {
          const job = await api("POST", "/api/v1/models/pull", accept ? { name: m.name, accept_license: true } : { name: m.name });
          const done = await waitJob(job.id, (j) => { bar.value = j.progress.fraction; });
          cell.firstChild.textContent = done.state === "succeeded" ? "installed" : `pull ${done.state}`;
          pulled.textContent = `${m.name}: ${cell.firstChild.textContent}.`;
          if (done.error) say(why, new Error(done.error));
        } catch (e) { say(why, e); }
        // A pull that did not work may be tried again (the button keeps the focus either way).
        busy(pull, cell.firstChild.textContent === "installed");
        bar.hidden = true;
      });
      cell.append(" ", pull, bar, why);
    }
    if (me && me.admin && m.state === "installed") cell.append(" ", ...removal(m, cell, pulled));
    return h("tr", {}, h("td", {}, m.name), h("td", {}, m.kind), h("td", {}, m.size ? bytes(m.size) : ""),
      h("td", {}, m.license || ""), cell);
  });
  const table = h("div", { class: "scroll" }, h("table", {},
    h("caption", {}, `Models in ${models.models_dir}`),
    h("thead", {}, h("tr", {}, ["Name", "Kind", "Size", "Licence", "State"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows)));

  root.append(h("section", { class: "box" }, h("h1", {}, "Box"),
    h("p", { class: "hint" }, `reelbox ${system.version}, up ${Math.round(system.uptime_s / 60)} min; devices: `,
      system.devices.map((d) => `${d.name || d.id}${d.memory_total_mib ? ` (${d.memory_total_mib} MiB)` : ""}`).join(", ")),
    h("section", { class: "card" }, h("h2", {}, "Devices"), devices),
    queue,
    disks,
    h("section", { class: "card" }, h("h2", {}, "Models"), table, pulled)));
  return () => telemetry.close();
}
