// Picture's "Start from a picture": a picture from this device that the box draws over
// (image-to-image: `init_image`, uploaded as soon as it is picked, as Photo's photo is), how
// much of it may change (`strength`), and, painted over it, the part drawn again (inpainting:
// `mask`, made at the picture's own size and uploaded when the picture is made; the rest
// comes back as it was). The picture sets the size of the one made (`sizeFor`).
import { upload } from "./api.js";
import { select } from "./choices.js";
import { BRUSHES, paintArea } from "./paint.js";
import { pickPicture } from "./pick.js";
import { field, h } from "./ui.js";

/** The API's `strength` when a request sends none (`kinds/image/params.rs`). */
const STRENGTH = 0.75;

/**
 * The section: `sizeFor(w, h)` is the size a `w`×`h` picture is made at; `refusedNow(e)`
 * hears a picked file the box refused (its field is `file`); `changed()` hears a picture
 * picked, loaded or removed, and every change of what is painted.
 */
export function startPicture({ sizeFor, refusedNow, changed }) {
  const file = h("input", { type: "file", accept: "image/*" });
  const img = h("img", { class: "start-preview", alt: "The picture you start from" });
  const status = h("p", { class: "hint", id: "pic-paint-status", role: "status" });
  const invert = h("input", { type: "checkbox", id: "pic-invert" });
  const tell = (painting) => {
    status.textContent = painting ? "Painting: the arrow keys paint as they move the brush; Space stops."
      : !paint.painted() ? "Nothing painted: all of the picture is drawn again."
        : paint.inverted() ? "What is painted is kept; everything else is drawn again."
          : "Only what is painted is drawn again; the rest stays as it is.";
  };
  const paint = paintArea(img, (painting) => {
    tell(painting);
    // Painting again clears what the box said of the last mask.
    paintError.replaceChildren();
    paint.canvas.removeAttribute("aria-invalid");
    changed();
  });
  const canvas = paint.canvas;
  canvas.id = "pic-paint";
  canvas.setAttribute("aria-labelledby", "pic-paint-label");
  canvas.setAttribute("aria-describedby", "pic-paint-hint pic-paint-status pic-paint-error");
  const paintError = h("div", { class: "error", id: "pic-paint-error", role: "alert" });
  const brush = select(BRUSHES, BRUSHES[1][0]);
  brush.addEventListener("change", () => paint.brush(brush.value));
  invert.addEventListener("change", () => paint.invert(invert.checked));
  const undo = h("button", { type: "button", class: "secondary", id: "pic-undo" }, "Undo");
  const clear = h("button", { type: "button", class: "secondary", id: "pic-clear" }, "Clear");
  undo.addEventListener("click", () => paint.undo());
  clear.addEventListener("click", () => paint.clear());
  const change = h("input", { type: "number", min: 0.05, max: 1, step: 0.05, value: STRENGTH, inputmode: "decimal" });
  const size = h("p", { class: "hint", id: "pic-start-size" });
  const remove = h("button", { type: "button", class: "secondary", id: "pic-remove" }, "Remove picture");
  const shown = h("div", { class: "start", hidden: true },
    h("label", { id: "pic-paint-label", for: "pic-paint" }, "Paint what to redraw (optional)"),
    h("p", { class: "hint", id: "pic-paint-hint" },
      "Paint over the part to draw again, with a mouse, a finger or a pen; the rest stays as it is. " +
      "With the keyboard: the arrow keys move the brush, Space starts and stops painting."),
    paint.el,
    paintError,
    status,
    h("div", { class: "row paint-tools" }, field("pic-brush", "Brush", brush), undo, clear),
    h("div", { class: "checks" }, h("label", {}, invert, " Keep what is painted and redraw everything else")),
    size,
    field("pic-change", "How much may change (0.05–1)", change,
      "Little keeps your picture; 1 draws it anew (only the painted part, when you paint)."));
  // Beside the file, not in what it shows: a file the box refused is removed here too.
  const removeRow = h("div", { class: "row", hidden: true }, remove);
  const el = h("div", { class: "start-from" },
    field("pic-init", "Start from a picture (optional)", file,
      "A photo or picture from this device (on a phone you can take one): the box draws over it, keeping its shape."),
    removeRow,
    shown);

  /** The picture's own size once it is shown; null before. */
  let own = null;
  // The mask uploaded for the paint as it was (`version`), kept while the paint stays so.
  let mask = { version: -1, id: null };
  const pick = pickPicture(file, img, { shown, refusedNow, picked: (f) => { own = null; removeRow.hidden = !f; changed(); } });
  img.addEventListener("load", () => {
    own = [img.naturalWidth, img.naturalHeight];
    // The brush kept from an earlier visit (`controls`) is put back without a `change`.
    paint.brush(brush.value);
    paint.reset(...own);
    section.sized();
  });
  remove.addEventListener("click", () => {
    pick.clear();
    file.focus();
  });

  const section = {
    el,
    /** The fields kept between visits (the picture itself is not: a file cannot be put back). */
    controls: { brush, change },
    /** Whether a picture is picked (the size select no longer applies). */
    picked: () => !!file.files[0],
    /** Whether a mask will be sent: something painted on a picture. */
    masked: () => !!file.files[0] && paint.painted(),
    /** Says the size the picture is made at (again when the model changes). */
    sized() {
      if (!own) { size.textContent = ""; return; }
      const [w, hh] = sizeFor(...own);
      size.textContent = w === own[0] && hh === own[1]
        ? `The picture is made at ${w} × ${hh}, the size of yours.`
        : `The picture is made at ${w} × ${hh}: your picture's shape at the picture model's own size.`;
    },
    /**
     * Adds the picture to `body`: its upload, the size it sets, its strength and the mask of
     * what is painted; a failed upload is thrown with its field, `file` (the picture's) or
     * `mask`.
     */
    async into(body) {
      body.init_image = await pick.uploaded();
      if (!own) {
        await img.decode();
        own = [img.naturalWidth, img.naturalHeight];
      }
      [body.width, body.height] = sizeFor(...own);
      if (change.value !== "") body.strength = Number(change.value);
      if (mask.version !== paint.version()) {
        const blob = await paint.mask();
        mask = { version: paint.version(), id: blob && upload(new File([blob], "mask.png", { type: "image/png" })) };
      }
      if (!mask.id) return;
      try {
        body.mask = await mask.id;
      } catch (e) {
        // Not stored: the next try makes and sends it again.
        mask = { version: -1, id: null };
        e.field = "mask";
        throw e;
      }
    },
  };
  tell(false);
  return section;
}
