"""Regenerate models/demo-{shapes,presenter,upscaler}.toml from the files under
models/demo/{shapes,presenter,upscaler}/ (one [[files]] entry per file, sha256 + size).
Every file of the model directory is listed (json configs, metrics.json and the
held-out evaluation data included), so the manifest describes the directory exactly.

Usage: python write_manifests.py
"""
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.dirname(HERE)

SPECS = [
    ("demo-shapes", "diffusion", "shapes",
     "Tiny demo text-to-image model (coloured shapes, 64x64) in the Stable Diffusion ONNX layout"),
    ("demo-presenter", "lipsync", "presenter",
     "Tiny demo lip-sync model (Wav2Lip interface) for the bundled cartoon presenter"),
    ("demo-upscaler", "upscale", "upscaler",
     "Tiny demo x2 upscaler (Real-ESRGAN interface) trained on synthetic shapes and faces"),
]
SKIP_NAMES = set()
SKIP_DIRS = {"__pycache__"}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    for name, kind, sub, summary in SPECS:
        d = os.path.join(HERE, sub)
        if not os.path.isdir(d):
            print(f"skip {name}: {d} missing")
            continue
        files = []
        for root, dirs, fns in os.walk(d):
            dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS)
            for fn in sorted(fns):
                if fn in SKIP_NAMES or fn.startswith("."):
                    continue
                p = os.path.join(root, fn)
                files.append((os.path.relpath(p, d).replace(os.sep, "/"), os.path.getsize(p), sha256(p)))
        files.sort()
        lines = [f'name = "{name}"', f'kind = "{kind}"', "demo = true", f'summary = "{summary}"',
                 f'sources = ["bundled:models/demo/{sub}"]', ""]
        for rel, size, h in files:
            lines += ["[[files]]", f'path = "{rel}"', f"size = {size}", f'sha256 = "{h}"', ""]
        out = os.path.join(MODELS, f"{name}.toml")
        with open(out, "w") as f:
            f.write("\n".join(lines))
        print(f"wrote {out} ({len(files)} files)")


if __name__ == "__main__":
    main()
