// The API as the page uses it: same-origin fetches with the session cookie (never a key in
// storage); errors carry the API's field name so forms can show them next to the input.
import { bytes } from "./ui.js";

/** An error answer of the API. */
export class ApiError extends Error {
  constructor(status, body, retryAfter = null) {
    const e = (body && body.error) || {};
    super(e.message || `the box answered ${status}`);
    this.status = status;
    this.code = e.code || "";
    this.field = e.field || null;
    /** The model a refusal names that cannot run, as data (`error.model`), when it does. */
    this.model = e.model || null;
    /** Seconds the box asks to wait before trying again (`Retry-After`), when it says. */
    this.retryAfter = retryAfter;
  }
}

/** Calls the API; JSON bodies are encoded, FormData sent as multipart. */
export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    // The browser's own words ("Failed to fetch") mean nothing to a person at a phone.
    throw new ApiError(0, { error: { code: "unreachable",
      message: "Cannot reach the box: check that it is switched on and that this device is on its network." } });
  }
  if (resp.status === 401 && path !== "/api/v1/session") {
    window.dispatchEvent(new CustomEvent("reelbox:login"));
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: { message: text } }; }
  if (!resp.ok) {
    const wait = Number(resp.headers.get("retry-after"));
    throw new ApiError(resp.status, data, Number.isFinite(wait) && wait > 0 ? wait : null);
  }
  return data;
}

/** Polls a job until it is final; `onJob` sees every reading. */
export async function waitJob(id, onJob, everyMs = 400) {
  for (;;) {
    const job = await api("GET", `/api/v1/jobs/${id}`);
    if (onJob) onJob(job);
    if (["succeeded", "failed", "canceled"].includes(job.state)) return job;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A job's artifacts. */
export function artifacts(id) {
  return api("GET", `/api/v1/jobs/${id}/artifacts`);
}

/**
 * The largest file the box takes (`limits.max_upload_bytes`, from the session; 0 while it
 * is not known, when the box decides).
 */
export const uploadLimit = { bytes: 0 };

/**
 * The box's refusal of `file`, sent as `field`, as too large, carrying its size and the
 * limit for words.js; `answer` is the box's own, when it sent one.
 */
function tooLarge(file, field, answer) {
  const e = answer || new ApiError(413, { error: { code: "upload_too_large", field,
    message: `${field}: ${file.name} is ${bytes(file.size)}; the box takes files up to ${bytes(uploadLimit.bytes)} (limits.max_upload_bytes)` } });
  e.size = file.size;
  e.limit = uploadLimit.bytes;
  return e;
}

/**
 * Refuses `file`, to be sent as `field`, when it is larger than the box takes: said before
 * a byte is sent (a phone would send 40 MB only to hear no).
 */
export function checkSize(file, field) {
  if (uploadLimit.bytes && file.size > uploadLimit.bytes) throw tooLarge(file, field);
}

/** Uploads a file as an artifact; returns its id. */
export async function upload(file) {
  checkSize(file, "file");
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const art = await api("POST", "/api/v1/artifacts", form);
    return art.id;
  } catch (e) {
    throw e.code === "upload_too_large" ? tooLarge(file, "file", e) : e;
  }
}

/** Installed models of a kind (`tts`, `diffusion`, `lipsync`, `upscale`, `face`): this
 * box's, and on a head its live worker boxes' (`boxes`), where jobs naming them are made. */
export async function installed(kind) {
  const list = await api("GET", "/api/v1/models");
  return list.models.filter((m) => m.kind === kind && (m.state === "installed" || (m.boxes || []).length > 0));
}
