// Paint what to redraw: a canvas over a picture where a mouse, a finger or a pen (Pointer
// Events), or the keyboard (arrow keys move a brush, Space starts and stops painting), paints
// the part the box draws again, shown as translucent colour over the picture. The paint is
// kept as strokes in the picture's own pixels, so the mask is made at the picture's size
// whatever size the page shows it at, a stroke is what Undo takes back, and the shown layer
// is drawn again from them when the page's width changes.
import { h } from "./ui.js";

/** Brush sizes, as a share of the picture's longer side (a phone photo and a 256 px picture alike). */
export const BRUSHES = [["0.03", "Small"], ["0.06", "Medium"], ["0.12", "Large"], ["0.25", "Very large"]];

/** The paint's colour on the page (the layer is shown half see-through by the stylesheet). */
const PAINT = "#e11d74";

/** Draws `strokes` (picture pixels) on `ctx` scaled by `k`, in its current colour. */
function drawStrokes(ctx, strokes, k) {
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const { width, points } of strokes) {
    const [x0, y0] = points[0];
    ctx.beginPath();
    if (points.length === 1) {
      // A tap or a keyboard dab: a dot the brush's size.
      ctx.arc(x0 * k, y0 * k, (width * k) / 2, 0, 2 * Math.PI);
      ctx.fill();
      continue;
    }
    ctx.lineWidth = width * k;
    ctx.moveTo(x0 * k, y0 * k);
    for (const [x, y] of points.slice(1)) ctx.lineTo(x * k, y * k);
    ctx.stroke();
  }
}

/**
 * The paint area over `img` (an `<img>` the caller fills): `el` to place, `canvas` (the
 * control: focusable, named by the caller), and the paint's state. `changed(painting)` hears
 * every change of what is painted, and the keyboard's brush going down or up.
 */
export function paintArea(img, changed) {
  const canvas = h("canvas", { class: "paint", tabindex: 0, role: "application", "aria-roledescription": "paint area" });
  const cursor = h("div", { class: "brush", "aria-hidden": "true", hidden: true });
  const el = h("div", { class: "paint-wrap" }, img, canvas, cursor);
  /** The picture's own size; 0 until it is loaded. */
  let W = 0, H = 0;
  /** Strokes as `{ width, points: [[x, y], …] }` in picture pixels, oldest first. */
  let strokes = [];
  let inverted = false;
  let share = Number(BRUSHES[1][0]);
  // The keyboard's brush: where it is (picture pixels) and the stroke it paints while down.
  let at = [0, 0];
  let keyStroke = null;
  // The pointer painting now (one at a time: a second finger is ignored).
  let pointer = null;
  /** Bumped at every change of the paint, so a mask made once is sent again until it changes. */
  let version = 0;

  const brush = () => Math.max(1, share * Math.max(W, H));
  const showCursor = () => {
    const d = brush();
    Object.assign(cursor.style, { left: `${(at[0] / W) * 100}%`, top: `${(at[1] / H) * 100}%`,
      width: `${(d / W) * 100}%`, height: `${(d / H) * 100}%` });
  };
  const draw = () => {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(canvas.clientWidth * dpr));
    canvas.height = Math.max(1, Math.round(canvas.clientHeight * dpr));
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!W) return;
    ctx.fillStyle = ctx.strokeStyle = PAINT;
    if (inverted) {
      // What is painted is kept: everything else is coloured, the strokes cut out of it.
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.globalCompositeOperation = "destination-out";
    }
    drawStrokes(ctx, strokes, canvas.width / W);
    ctx.globalCompositeOperation = "source-over";
    if (!cursor.hidden) showCursor();
  };
  const update = () => {
    version++;
    draw();
    changed(!!keyStroke);
  };
  new ResizeObserver(draw).observe(canvas);

  const point = (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = ((ev.clientX - r.left) / r.width) * W, y = ((ev.clientY - r.top) / r.height) * H;
    return [Math.min(Math.max(x, 0), W), Math.min(Math.max(y, 0), H)];
  };
  canvas.addEventListener("pointerdown", (ev) => {
    if (!W || pointer || (ev.pointerType === "mouse" && ev.button !== 0)) return;
    ev.preventDefault();
    canvas.setPointerCapture(ev.pointerId);
    pointer = { id: ev.pointerId, stroke: { width: brush(), points: [point(ev)] } };
    strokes.push(pointer.stroke);
    draw();
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!pointer || ev.pointerId !== pointer.id) return;
    // A fast finger's in-between points, as the screen reported them, keep its line smooth.
    const seen = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
    for (const e of seen.length ? seen : [ev]) pointer.stroke.points.push(point(e));
    draw();
  });
  const lift = (ev) => {
    if (!pointer || ev.pointerId !== pointer.id) return;
    // The keyboard's brush goes on from where the pointer left off.
    at = pointer.stroke.points[pointer.stroke.points.length - 1];
    pointer = null;
    update();
  };
  canvas.addEventListener("pointerup", lift);
  canvas.addEventListener("pointercancel", lift);

  const penUp = () => {
    if (!keyStroke) return;
    keyStroke = null;
    update();
  };
  canvas.addEventListener("keydown", (ev) => {
    if (!W) return;
    const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[ev.key];
    if (step) {
      // Half a brush a press (a quarter with Shift, for a careful edge).
      const n = brush() / (ev.shiftKey ? 4 : 2);
      at = [Math.min(Math.max(at[0] + step[0] * n, 0), W), Math.min(Math.max(at[1] + step[1] * n, 0), H)];
      if (keyStroke) keyStroke.points.push(at);
      draw();
    } else if (ev.key === " " || ev.key === "Enter") {
      if (keyStroke) penUp();
      else {
        keyStroke = { width: brush(), points: [at] };
        strokes.push(keyStroke);
        update();
      }
    } else if (ev.key === "Escape" && keyStroke) {
      penUp();
    } else if ((ev.ctrlKey || ev.metaKey) && ev.key === "z") {
      area.undo();
    } else {
      return;
    }
    ev.preventDefault();
  });
  canvas.addEventListener("focus", () => { cursor.hidden = false; showCursor(); });
  canvas.addEventListener("blur", () => { cursor.hidden = true; penUp(); });

  const area = {
    el,
    canvas,
    /** A new picture (its own size): nothing painted, the keyboard's brush in its middle. */
    reset(width, height) {
      W = width; H = height;
      strokes = []; keyStroke = null; pointer = null;
      at = [W / 2, H / 2];
      update();
    },
    /** Takes back the last stroke. */
    undo() {
      if (keyStroke) keyStroke = null;
      strokes.pop();
      update();
    },
    /** Takes back every stroke. */
    clear() {
      strokes = []; keyStroke = null;
      update();
    },
    /** Whether what is painted is what is kept (everything else is drawn again). */
    invert(on) {
      inverted = on;
      update();
    },
    /** The brush's size, a share of the picture's longer side (one of `BRUSHES`). */
    brush(value) {
      share = Number(value) || share;
      if (!cursor.hidden) showCursor();
    },
    /** Whether anything is painted. */
    painted: () => strokes.length > 0,
    inverted: () => inverted,
    /** Bumped at every change of the paint. */
    version: () => version,
    /**
     * The mask as a PNG at the picture's own size: white where the box draws again (what is
     * painted, or all but it when inverted), black where it keeps the picture; null when
     * nothing is painted (the whole picture is drawn again, no mask needed).
     */
    mask() {
      if (!strokes.length || !W) return Promise.resolve(null);
      const c = document.createElement("canvas");
      c.width = W; c.height = H;
      const ctx = c.getContext("2d");
      ctx.fillStyle = inverted ? "#fff" : "#000";
      ctx.fillRect(0, 0, W, H);
      ctx.fillStyle = ctx.strokeStyle = inverted ? "#000" : "#fff";
      drawStrokes(ctx, strokes, 1);
      return new Promise((resolve, reject) => c.toBlob((b) => (b ? resolve(b) : reject(new Error("the mask could not be made"))), "image/png"));
    },
  };
  return area;
}
