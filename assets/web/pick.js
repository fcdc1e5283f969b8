// A picture picked from this device (on a phone the picker offers the camera), uploaded as
// soon as it is picked (`POST /api/v1/artifacts`) so a file the box cannot read is said at
// once, and shown in a preview: Photo's photo and Picture's "Start from a picture" alike.
import { ApiError, upload } from "./api.js";

/** A refusal made in the page, shown at `field` as the daemon's are. */
export function missing(field, message) {
  return new ApiError(400, { error: { code: "invalid_param", field, message } });
}

/**
 * Whether an upload's error refuses the file itself (sending it again would not help): a
 * file the box cannot read, or one past its size limit, whether the page said so before
 * sending it or the box did (413).
 */
function refused(e) {
  return e.status === 400 || e.status === 415 || (e.status === 413 && e.code !== "quota_exceeded");
}

/**
 * Uploads the picture picked in `input` at once and shows it in `preview` (an `<img>`;
 * `shown`, the element shown and hidden with it, is the preview itself unless given).
 * `refusedNow(e)` hears an upload that failed while its picture is still the one picked;
 * `picked(file)` every change (null when the pick is undone). Returns `uploaded()`: the
 * picture's artifact id as a promise, null while none is picked; a pick-time upload that
 * failed for a reason that passes (the box away, busy or full) is tried again, one the box
 * refused is not (picking the same file again fires no `change`, so this is the only way
 * to send it); and `clear()`, which undoes the pick.
 */
export function pickPicture(input, preview, { shown = preview, refusedNow, picked = () => {} }) {
  let id = null;
  preview.addEventListener("error", () => { shown.hidden = true; });
  input.addEventListener("change", () => {
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.removeAttribute("src");
    shown.hidden = true;
    id = null;
    const file = input.files[0];
    picked(file || null);
    if (!file) return;
    preview.src = URL.createObjectURL(file);
    shown.hidden = false;
    id = upload(file);
    // Said now, at the field; an action on it says it again.
    id.catch((e) => { if (input.files[0] === file) { shown.hidden = true; refusedNow(e); } });
  });
  return {
    uploaded() {
      if (!id) return null;
      id = id.catch((e) => (refused(e) || !input.files[0] ? Promise.reject(e) : upload(input.files[0])));
      return id;
    },
    clear() {
      input.value = "";
      input.dispatchEvent(new Event("change"));
    },
  };
}
