"""Synthetic data shared by the reelbox demo models.

* Shapes: palette, caption grammar, 64x64 (or any size) renderer.
* Cartoon faces: a vectorised torch renderer for 96x96 face crops whose mouth
  opening / width are parameters (used by train_presenter.py), plus the demo
  presenter portrait.
* Wav2Lip mel front-end (numpy + librosa filters) and the mouth-openness target.

Everything here is deterministic given a numpy / torch generator.
"""
from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
from PIL import Image, ImageDraw

# --------------------------------------------------------------------------
# Palette and caption grammar
# --------------------------------------------------------------------------

PALETTE = {
    "red": (220, 38, 38),
    "orange": (245, 140, 20),
    "yellow": (250, 220, 40),
    "green": (34, 160, 60),
    "blue": (35, 85, 225),
    "purple": (140, 55, 190),
    "white": (245, 245, 245),
    "black": (22, 22, 22),
}
COLOURS = list(PALETTE)
SHAPES = ["circle", "square", "triangle", "diamond"]
# position words for one shape / pairs for two shapes
POS1 = ["on the left", "on the right", "at the top", "at the bottom", "in the center"]
POS_PAIRS = [("on the left", "on the right"), ("on the right", "on the left"),
             ("at the top", "at the bottom"), ("at the bottom", "at the top")]

# centre (fraction of width/height) for each position phrase
POS_CENTRE = {
    "on the left": (0.28, 0.5), "on the right": (0.72, 0.5),
    "at the top": (0.5, 0.28), "at the bottom": (0.5, 0.72), "in the center": (0.5, 0.5),
}


def caption_text(item: dict) -> str:
    """item: {"background": c, "shapes": [{"colour","kind","position"|None}, ...]}"""
    parts = []
    for s in item["shapes"]:
        p = f"a {s['colour']} {s['kind']}"
        if s.get("position"):
            p += " " + s["position"]
        parts.append(p)
    return " and ".join(parts) + f" on a {item['background']} background"


def combo_key(item: dict) -> tuple:
    """Content key independent of order and positions (used to hold captions out)."""
    return (item["background"],) + tuple(sorted((s["colour"], s["kind"]) for s in item["shapes"]))


def random_item(rng: random.Random, n_shapes: int | None = None, positions: bool | None = None) -> dict:
    if n_shapes is None:
        n_shapes = 1 if rng.random() < 0.35 else 2
    if positions is None:
        positions = rng.random() < 0.5
    bg = rng.choice(COLOURS)
    cols = rng.sample([c for c in COLOURS if c != bg], n_shapes)
    kinds = [rng.choice(SHAPES) for _ in range(n_shapes)]
    if positions:
        pos = [rng.choice(POS1)] if n_shapes == 1 else list(rng.choice(POS_PAIRS))
    else:
        pos = [None] * n_shapes
    return {"background": bg, "shapes": [{"colour": c, "kind": k, "position": p}
                                         for c, k, p in zip(cols, kinds, pos)]}


def heldout_items(n: int = 44, seed: int = 1234) -> list[dict]:
    """Held-out captions: 36 two-shape and 8 one-shape items. Their content keys are
    excluded from training entirely (in any order, with or without positions)."""
    rng = random.Random(seed)
    out, keys = [], set()
    while len(out) < n:
        item = random_item(rng, n_shapes=1 if len(out) < 8 else 2, positions=rng.random() < 0.5)
        k = combo_key(item)
        if k in keys:
            continue
        keys.add(k)
        out.append(item)
    return out


def training_items(n: int, seed: int, exclude: set) -> list[dict]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        it = random_item(rng)
        if combo_key(it) in exclude:
            continue
        out.append(it)
    return out


def words_of_grammar() -> list[str]:
    w = set("a and on the background".split())
    w |= set(COLOURS) | set(SHAPES)
    for p in POS1:
        w |= set(p.split())
    return sorted(w)


# --------------------------------------------------------------------------
# Shape renderer
# --------------------------------------------------------------------------

def _shape_poly(kind: str, cx: float, cy: float, r: float):
    if kind == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == "diamond":
        r2 = r * 1.25
        return [(cx, cy - r2), (cx + r2, cy), (cx, cy + r2), (cx - r2, cy)]
    if kind == "triangle":
        r2 = r * 1.2
        return [(cx, cy - r2), (cx + r2 * 0.98, cy + r2 * 0.75), (cx - r2 * 0.98, cy + r2 * 0.75)]
    raise ValueError(kind)


def render(item: dict, size: int = 64, rng: random.Random | None = None, ss: int = 4) -> np.ndarray:
    """Render an item to uint8 RGB [size,size,3] (supersampled ss times, box-filtered).
    Shape placement is random (jittered around the named position)."""
    rng = rng or random.Random(0)
    S = size * ss
    img = Image.new("RGB", (S, S), PALETTE[item["background"]])
    d = ImageDraw.Draw(img)
    shapes = item["shapes"]
    n = len(shapes)
    if n == 2 and shapes[0].get("position") is None:
        # unpositioned pair: random side-by-side or stacked arrangement
        pair = rng.choice(POS_PAIRS)
        poss = list(pair)
    else:
        poss = [s.get("position") for s in shapes]
    for s, p in zip(shapes, poss):
        if p is None:
            cx, cy = rng.uniform(0.38, 0.62), rng.uniform(0.38, 0.62)
            r = rng.uniform(0.17, 0.26)
        else:
            cx, cy = POS_CENTRE[p]
            cx += rng.uniform(-0.05, 0.05)
            cy += rng.uniform(-0.05, 0.05)
            r = rng.uniform(0.13, 0.19) if n == 2 else rng.uniform(0.15, 0.21)
        cx, cy, r = cx * S, cy * S, r * S
        col = PALETTE[s["colour"]]
        if s["kind"] == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
        else:
            d.polygon(_shape_poly(s["kind"], cx, cy, r), fill=col)
    if ss > 1:
        img = img.resize((size, size), Image.BOX)
    return np.asarray(img, dtype=np.uint8)


# --------------------------------------------------------------------------
# Colour evaluation (same rule as the Rust quality test)
# --------------------------------------------------------------------------

PRESENCE_MIN_PIXELS_FRAC = 0.006   # >= 0.6% of the pixels (25 px at 64x64)
PRESENCE_MAX_DIST = 60.0           # RGB euclidean distance to the palette colour


def colour_stats(img: np.ndarray):
    """img uint8 HxWx3 -> (dominant colour name, dict name -> count of pixels
    within PRESENCE_MAX_DIST whose nearest palette colour it is)."""
    pal = np.array([PALETTE[c] for c in COLOURS], dtype=np.float32)
    px = img.reshape(-1, 3).astype(np.float32)
    dist = np.sqrt(((px[:, None, :] - pal[None]) ** 2).sum(-1))
    near = dist.argmin(1)
    counts = np.bincount(near, minlength=len(COLOURS))
    dominant = COLOURS[int(counts.argmax())]
    close = dist[np.arange(len(px)), near] <= PRESENCE_MAX_DIST
    ccounts = np.bincount(near[close], minlength=len(COLOURS))
    return dominant, {c: int(ccounts[i]) for i, c in enumerate(COLOURS)}


def evaluate_item(img: np.ndarray, item: dict):
    dom, cc = colour_stats(img)
    need = PRESENCE_MIN_PIXELS_FRAC * img.shape[0] * img.shape[1]
    bg_ok = dom == item["background"]
    shapes_ok = all(cc[s["colour"]] >= need for s in item["shapes"])
    return bg_ok, shapes_ok


# --------------------------------------------------------------------------
# CLIP-format byte-level BPE tokenizer, trained on the caption grammar
# --------------------------------------------------------------------------

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def train_clip_bpe(words_with_counts: dict[str, int]):
    """Classic BPE on words (each word's last symbol carries '</w>', as CLIP).
    Merges until every word is one symbol. Returns (vocab dict, merges list)."""
    b2u = bytes_to_unicode()
    words = {}
    for w, c in words_with_counts.items():
        sym = [b2u[b] for b in w.encode("utf-8")]
        sym[-1] = sym[-1] + "</w>"
        words[tuple(sym)] = c
    merges = []
    while True:
        pairs = {}
        for sym, c in words.items():
            for a, b in zip(sym, sym[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        new = {}
        for sym, c in words.items():
            out, i = [], 0
            while i < len(sym):
                if i < len(sym) - 1 and (sym[i], sym[i + 1]) == best:
                    out.append(sym[i] + sym[i + 1])
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            new[tuple(out)] = c
        words = new
    base = list(b2u.values())
    vocab_list = base + [v + "</w>" for v in base]
    for a, b in merges:
        vocab_list.append(a + b)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {}
    for t in vocab_list:
        if t not in vocab:
            vocab[t] = len(vocab)
    return vocab, merges


def write_tokenizer(dirpath: str, vocab: dict, merges: list):
    import os
    os.makedirs(dirpath, exist_ok=True)
    with open(f"{dirpath}/vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(f"{dirpath}/merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special = {
        "bos_token": {"content": "<|startoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "eos_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "pad_token": "<|endoftext|>",
        "unk_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
    }
    with open(f"{dirpath}/special_tokens_map.json", "w") as f:
        json.dump(special, f, indent=2)
    cfg = {
        "add_prefix_space": False,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
        "clean_up_tokenization_spaces": True,
    }
    with open(f"{dirpath}/tokenizer_config.json", "w") as f:
        json.dump(cfg, f, indent=2)


class SimpleClipTokenizer:
    """Minimal re-implementation of CLIP tokenisation for our ASCII grammar
    (lowercase, split on the CLIP regex, BPE, BOS/EOS, pad with EOS to 77)."""

    def __init__(self, vocab: dict, merges: list):
        import re
        self.vocab = vocab
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()
        self.pat = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-zA-Z]+|[0-9]|[^\sa-zA-Z0-9]+")
        self.bos = vocab["<|startoftext|>"]
        self.eos = vocab["<|endoftext|>"]
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = [self.b2u[b] for b in token.encode("utf-8")]
        word[-1] += "</w>"
        while len(word) > 1:
            pairs = [(self.ranks.get((a, b), 1e18), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
            r, i = min(pairs)
            if r == 1e18:
                break
            a, b = word[i], word[i + 1]
            out, j = [], 0
            while j < len(word):
                if j < len(word) - 1 and word[j] == a and word[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(word[j])
                    j += 1
            word = out
        self.cache[token] = word
        return word

    def __call__(self, text: str, length: int = 77) -> list[int]:
        text = " ".join(text.lower().split())
        ids = [self.bos]
        for tok in self.pat.findall(text):
            ids += [self.vocab[p] for p in self.bpe(tok)]
        ids = ids[: length - 1] + [self.eos]
        ids += [self.eos] * (length - len(ids))
        return ids


# --------------------------------------------------------------------------
# Cartoon faces (torch, vectorised) for the presenter model
# --------------------------------------------------------------------------

SKINS = [(255, 214, 170), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
         (255, 224, 189), (234, 192, 134), (120, 190, 240), (150, 220, 140), (250, 170, 200)]
MOUTH_DARK = (70, 16, 28)       # RGB of the open mouth interior


def face_params(n: int, gen, jitter: float = 1.0):
    """Random face parameters as float tensors of shape [n] (or [n,3] for colours).
    gen: torch.Generator. Coordinates are in 96x96 crop pixels."""
    import torch

    def U(a, b, shape=(n,)):
        return a + (b - a) * torch.rand(shape, generator=gen)

    skins = torch.tensor(SKINS, dtype=torch.float32)
    p = {}
    p["cx"] = 48 + jitter * U(-4, 4)
    p["cy"] = 46 + jitter * U(-3, 3)
    p["rx"] = U(32, 38)
    p["ry"] = p["rx"] * U(1.05, 1.18)
    idx = torch.randint(0, len(SKINS), (n,), generator=gen)
    p["skin"] = (skins[idx] + U(-15, 15, (n, 3))).clamp(0, 255)
    p["bg"] = U(0, 255, (n, 3))
    p["hair"] = U(0, 160, (n, 3))
    p["eye"] = U(0, 90, (n, 3))
    p["eye_dx"] = U(11, 15)
    p["eye_y"] = U(-10, -6)       # relative to cy
    p["eye_r"] = U(3.5, 5.0)
    p["mouth_y"] = U(19, 23)      # relative to cy -> mouth centre ~ row 67
    p["mouth_w"] = U(10, 13)      # half width at rest
    p["hair_h"] = U(0.25, 0.45)   # fraction of the face top covered by hair
    p["lip"] = torch.stack([U(150, 210), U(50, 90), U(60, 100)], 1)
    return p


DEMO_FACE = {  # the demo presenter (centre of the training distribution)
    "cx": 48.0, "cy": 46.0, "rx": 35.0, "ry": 39.0,
    "skin": (241, 194, 140), "bg": (70, 110, 160), "hair": (90, 50, 25), "eye": (40, 30, 25),
    "eye_dx": 13.0, "eye_y": -8.0, "eye_r": 4.2, "mouth_y": 21.0, "mouth_w": 11.5,
    "hair_h": 0.35, "lip": (180, 70, 80),
}


def render_faces(p: dict, open_: "torch.Tensor", width: "torch.Tensor", size: int = 96,
                 offset=(0.0, 0.0), scale: float = 1.0, canvas: int | None = None):
    """Render faces. open_ in [0,1] (mouth opening), width in ~[0.75,1.25] (mouth width
    factor). Returns float tensor [n,3,H,W] RGB in [0,1]. With canvas/offset/scale the
    same face is drawn inside a larger canvas (used for the portrait)."""
    import torch
    n = open_.shape[0]
    H = canvas or size
    ys = (torch.arange(H, dtype=torch.float32) + 0.5)
    xs = (torch.arange(H, dtype=torch.float32) + 0.5)
    Y = ((ys - offset[1]) / scale).view(1, H, 1)
    X = ((xs - offset[0]) / scale).view(1, 1, H)
    aa = 0.7 / scale  # anti-aliasing width in face units

    def col(v):
        v = torch.as_tensor(v, dtype=torch.float32)
        if v.dim() == 1:
            v = v.view(1, 3).expand(n, 3)
        return (v / 255.0).view(n, 3, 1, 1)

    def f(v):
        v = torch.as_tensor(v, dtype=torch.float32)
        if v.dim() == 0:
            v = v.expand(n)
        return v.view(n, 1, 1)

    def ellipse(cx, cy, rx, ry):
        d = torch.sqrt(((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2)
        # signed distance approx in pixels
        sd = (d - 1) * torch.minimum(rx, ry)
        return (0.5 - sd / (2 * aa)).clamp(0, 1)

    cx, cy, rx, ry = f(p["cx"]), f(p["cy"]), f(p["rx"]), f(p["ry"])
    img = col(p["bg"]).expand(n, 3, H, H).clone()

    def paint(mask, c):
        nonlocal img
        m = mask.unsqueeze(1)
        img = img * (1 - m) + col(c) * m

    # hair (behind/top of the face)
    hair = ellipse(cx, cy - 4, rx + 4, ry + 3) * ((Y < cy - ry * (1 - 2 * f(p["hair_h"]))).float())
    paint(hair, p["hair"])
    # ears
    paint(ellipse(cx - rx, cy + 2, f(6.0), f(9.0)), p["skin"])
    paint(ellipse(cx + rx, cy + 2, f(6.0), f(9.0)), p["skin"])
    face = ellipse(cx, cy, rx, ry)
    paint(face, p["skin"])
    # fringe
    fringe = ellipse(cx, cy - ry * 0.95, rx * 0.95, ry * 0.55 * f(p["hair_h"]) * 2.2) * face
    paint(fringe, p["hair"])
    # eyes: white + pupil
    ey = cy + f(p["eye_y"])
    for s in (-1, 1):
        ex = cx + s * f(p["eye_dx"])
        paint(ellipse(ex, ey, f(p["eye_r"]) * 1.5, f(p["eye_r"]) * 1.2), (250, 250, 250))
        paint(ellipse(ex, ey + 0.5, f(p["eye_r"]) * 0.8, f(p["eye_r"]) * 0.8), p["eye"])
    # nose
    paint(ellipse(cx, cy + 5, f(3.0), f(2.2)), (torch.as_tensor(p["skin"], dtype=torch.float32) * 0.82))
    # mouth: lips ellipse + dark interior, opening and width from the audio
    my = cy + f(p["mouth_y"])
    mw = f(p["mouth_w"]) * f(width)
    oh = 1.2 + 8.5 * f(open_)          # interior half height
    paint(ellipse(cx, my, mw + 2.2, oh + 2.0), p["lip"])
    paint(ellipse(cx, my, mw, oh), MOUTH_DARK)
    return img.clamp(0, 1)


def render_portrait(size: int = 256, box=(80, 56, 96, 96)):
    """The demo presenter portrait: shoulders + the DEMO_FACE drawn so that the crop
    `box` is exactly the 96x96 training-space face crop (mouth closed)."""
    import torch
    x0, y0, w, h = box
    assert w == h
    p = {k: torch.tensor([v], dtype=torch.float32) if not isinstance(v, tuple)
         else torch.tensor([v], dtype=torch.float32) for k, v in DEMO_FACE.items()}
    face = render_faces(p, torch.zeros(1), torch.ones(1), canvas=size, offset=(x0, y0), scale=w / 96.0)
    img = (face[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    # shoulders / shirt below the face, outside the face box, plus neck
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    cx = x0 + w / 2
    d.rectangle([cx - 14, y0 + h, cx + 14, y0 + h + 14], fill=DEMO_FACE["skin"])
    d.ellipse([cx - 95, y0 + h + 6, cx + 95, y0 + h + 150], fill=(45, 60, 90))
    d.polygon([(cx - 14, y0 + h + 8), (cx + 14, y0 + h + 8), (cx, y0 + h + 30)], fill=DEMO_FACE["skin"])
    img2 = np.asarray(pil).copy()
    # keep the face box pixels exactly as rendered (the shirt must not leak in)
    img2[y0:y0 + h, x0:x0 + w] = img[y0:y0 + h, x0:x0 + w]
    return img2


# --------------------------------------------------------------------------
# Wav2Lip mel front-end and the openness target
# --------------------------------------------------------------------------

_MEL_BASIS = None


def wav2lip_mel(wav16k: np.ndarray) -> np.ndarray:
    """Wav2Lip melspectrogram: returns [80, T] float32, 80 frames/s."""
    global _MEL_BASIS
    import librosa
    from scipy import signal
    x = signal.lfilter([1, -0.97], [1], wav16k.astype(np.float64))
    D = librosa.stft(y=x, n_fft=800, hop_length=200, win_length=800, window="hann",
                     center=True, pad_mode="constant")
    if _MEL_BASIS is None:
        _MEL_BASIS = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    S = np.dot(_MEL_BASIS, np.abs(D))
    S = 20 * np.log10(np.maximum(1e-5, S)) - 20
    S = np.clip(8 * (S + 100) / 100 - 4, -4, 4)
    return S.astype(np.float32)


def mel_chunks(mel: np.ndarray, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """Wav2Lip chunking: chunk i = mel[:, floor(80*i/fps) : +16]; chunks running past the
    end are the final 16 frames. Returns [n_frames, 80, 16]."""
    out = []
    T = mel.shape[1]
    for i in range(n_frames):
        s = int(80.0 * (i / fps))
        if s + 16 > T:
            out.append(mel[:, T - 16:])
        else:
            out.append(mel[:, s:s + 16])
    return np.stack(out).astype(np.float32)


# openness target = clip((mean(chunk) - LOUD_LO) / (LOUD_HI - LOUD_LO), 0, 1)
LOUD_LO = -4.0
LOUD_HI = -0.4


def chunk_loudness(chunks: np.ndarray) -> np.ndarray:
    """Loudness per frame: the mean of the 80x16 mel chunk (normalised log-mel units)."""
    return chunks.reshape(chunks.shape[0], -1).mean(1)


def chunk_openness(chunks: np.ndarray) -> np.ndarray:
    return np.clip((chunk_loudness(chunks) - LOUD_LO) / (LOUD_HI - LOUD_LO), 0, 1)


def chunk_width(chunks: np.ndarray) -> np.ndarray:
    """Mouth width factor from the spectral balance (formant proxy): energy in the
    upper mel bands (>= band 40, ~1.9 kHz, F2 of front vowels / fricatives) against the
    lower bands (F1 region). Front vowels 'ee' -> wide, back rounded 'oo' -> narrow."""
    lo = chunks[:, 8:30, :].mean((1, 2))
    hi = chunks[:, 40:70, :].mean((1, 2))
    tilt = np.clip((hi - lo + 1.5) / 3.0, 0, 1)
    return (0.8 + 0.4 * tilt).astype(np.float32)


# mouth openness measurement on a 96x96 output crop (RGB uint8): number of "dark"
# pixels (max channel < MOUTH_DARK_MAX) inside MOUTH_RECT (x0, y0, x1, y1 exclusive).
MOUTH_RECT = (28, 52, 68, 84)
MOUTH_DARK_MAX = 110


def mouth_openness(crop_rgb_u8: np.ndarray) -> float:
    x0, y0, x1, y1 = MOUTH_RECT
    r = crop_rgb_u8[y0:y1, x0:x1].astype(np.int32)
    return float((r.max(-1) < MOUTH_DARK_MAX).sum())
