"""Train the reelbox demo x2 upscaler (Real-ESRGAN interface).

Data: synthetic shapes imagery (synth.render) and cartoon faces (synth.render_faces)
rendered at 128x128 (HR); LR = 2x2 box average of HR (rounded to uint8), i.e. the
same image rendered at half resolution.
Model: 4 conv3x3 layers (LeakyReLU) at LR resolution -> conv to 12 ch -> PixelShuffle(2),
added to a bilinear x2 of the input; clamped to [0,1]. Receptive field radius 5 LR px.

Usage: python train_upscaler.py [--steps N] [--out DIR]
"""
import argparse
import json
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import synth

HERE = os.path.dirname(os.path.abspath(__file__))


class Upscaler(nn.Module):
    def __init__(self, ch=32, n=4):
        super().__init__()
        layers = [nn.Conv2d(3, ch, 3, padding=1), nn.LeakyReLU(0.1)]
        for _ in range(n - 1):
            layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.LeakyReLU(0.1)]
        layers += [nn.Conv2d(ch, 12, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.ps = nn.PixelShuffle(2)

    def forward(self, x):
        base = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return (base + self.ps(self.body(x))).clamp(0.0, 1.0)


def make_images(n_shapes, n_faces, seed):
    rng = random.Random(seed)
    hr = []
    for _ in range(n_shapes):
        hr.append(synth.render(synth.random_item(rng), 128, rng))
    g = torch.Generator().manual_seed(seed)
    for i in range(0, n_faces, 32):
        k = min(32, n_faces - i)
        p = synth.face_params(k, g, jitter=3.0)
        o = torch.rand(k, generator=g)
        w = 0.8 + 0.4 * torch.rand(k, generator=g)
        # draw the 96-unit face into a 128 canvas with random zoom/offset
        for j in range(k):
            pj = {kk: v[j:j + 1] for kk, v in p.items()}
            sc = 1.0 + 0.6 * float(torch.rand(1, generator=g))
            off = (float(torch.rand(1, generator=g)) * 40 - 30, float(torch.rand(1, generator=g)) * 40 - 30)
            im = synth.render_faces(pj, o[j:j + 1], w[j:j + 1], canvas=128, offset=off, scale=sc)
            hr.append((im[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return np.stack(hr)


def box_down(hr_u8):
    x = hr_u8.astype(np.float32)
    lr = (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) / 4
    return np.clip(np.round(lr), 0, 255).astype(np.uint8)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def bicubic_up(lr_u8):
    return np.stack([np.asarray(Image.fromarray(x).resize((x.shape[1] * 2, x.shape[0] * 2), Image.BICUBIC))
                     for x in lr_u8])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--out", default=os.path.join(HERE, "upscaler"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a busy 2-core machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    t0 = time.time()
    hr = make_images(2400, 600, seed=1)
    lr = box_down(hr)
    # held-out (different seeds)
    hr_te = make_images(48, 16, seed=999)
    lr_te = box_down(hr_te)
    print(f"data {time.time() - t0:.1f}s", hr.shape, flush=True)

    HR = torch.from_numpy(hr).permute(0, 3, 1, 2).float() / 255
    LR = torch.from_numpy(lr).permute(0, 3, 1, 2).float() / 255
    model = Upscaler()
    nparam = sum(p.numel() for p in model.parameters())
    print("params", nparam, flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps, pct_start=0.05)
    g = torch.Generator().manual_seed(0)
    B, P = 32, 32
    t1 = time.time()
    for step in range(args.steps):
        idx = torch.randint(0, len(HR), (B,), generator=g)
        ys = torch.randint(0, 64 - P + 1, (B,), generator=g)
        xs = torch.randint(0, 64 - P + 1, (B,), generator=g)
        lrb = torch.stack([LR[i, :, y:y + P, x:x + P] for i, y, x in zip(idx, ys, xs)])
        hrb = torch.stack([HR[i, :, 2 * y:2 * y + 2 * P, 2 * x:2 * x + 2 * P] for i, y, x in zip(idx, ys, xs)])
        # random flips / channel permutation (colour augmentation)
        if step % 2:
            lrb, hrb = lrb.flip(3), hrb.flip(3)
        perm = torch.randperm(3, generator=g)
        lrb, hrb = lrb[:, perm], hrb[:, perm]
        out = model(lrb)
        loss = (out - hrb).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} {time.time() - t1:.0f}s", flush=True)
    train_s = time.time() - t1
    model.eval()

    # evaluate
    with torch.no_grad():
        sr = model(torch.from_numpy(lr_te).permute(0, 3, 1, 2).float() / 255)
    sr = (sr.permute(0, 2, 3, 1).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    bic = bicubic_up(lr_te)
    p_model = np.mean([psnr(a, b) for a, b in zip(sr, hr_te)])
    p_bic = np.mean([psnr(a, b) for a, b in zip(bic, hr_te)])
    print(f"held-out PSNR model {p_model:.2f} dB, bicubic {p_bic:.2f} dB, gain {p_model - p_bic:.2f} dB")

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    dummy = torch.rand(1, 3, 64, 64)
    torch.onnx.export(model, (dummy,), onnx_path, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                    "output": {0: "batch", 2: "height2", 3: "width2"}},
                      opset_version=17, dynamo=False)
    # held-out pairs for the Rust test
    hd = os.path.join(args.out, "heldout")
    os.makedirs(hd, exist_ok=True)
    pick = [0, 1, 2, 3, 4, 5, 48, 49]
    for k, i in enumerate(pick):
        Image.fromarray(lr_te[i]).save(os.path.join(hd, f"{k:02d}_lr.png"))
        Image.fromarray(hr_te[i]).save(os.path.join(hd, f"{k:02d}_hr.png"))

    # verify with onnxruntime
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    x = torch.from_numpy(lr_te[:4]).permute(0, 3, 1, 2).float().numpy() / 255
    y = sess.run(None, {"input": x})[0]
    with torch.no_grad():
        yt = model(torch.from_numpy(x)).numpy()
    err = float(np.abs(y - yt).max())
    # tiling exactness: 32x32 tiles with 10 px padding on a 64x64 image
    full = sess.run(None, {"input": x[:1]})[0][0]
    tiled = np.zeros_like(full)
    T, PAD = 32, 10
    for ty in range(0, 64, T):
        for tx in range(0, 64, T):
            y0, x0 = max(ty - PAD, 0), max(tx - PAD, 0)
            y1, x1 = min(ty + T + PAD, 64), min(tx + T + PAD, 64)
            o = sess.run(None, {"input": x[:1, :, y0:y1, x0:x1]})[0][0]
            tiled[:, 2 * ty:2 * ty + 2 * T, 2 * tx:2 * tx + 2 * T] = \
                o[:, 2 * (ty - y0):2 * (ty - y0) + 2 * T, 2 * (tx - x0):2 * (tx - x0) + 2 * T]
    terr = float(np.abs(tiled - full).max())
    # PSNR of the 8 stored pairs via ORT
    pp, pb = [], []
    for k in range(len(pick)):
        l = np.asarray(Image.open(os.path.join(hd, f"{k:02d}_lr.png")))
        h = np.asarray(Image.open(os.path.join(hd, f"{k:02d}_hr.png")))
        o = sess.run(None, {"input": (l.transpose(2, 0, 1)[None].astype(np.float32) / 255)})[0][0]
        o = (o.transpose(1, 2, 0) * 255).round().clip(0, 255).astype(np.uint8)
        pp.append(psnr(o, h))
        pb.append(psnr(bicubic_up(l[None])[0], h))
    res = {"params": nparam, "steps": args.steps, "train_seconds": round(train_s, 1),
           "psnr_model_64": round(float(p_model), 2), "psnr_bicubic_64": round(float(p_bic), 2),
           "psnr_model_stored8": round(float(np.mean(pp)), 2), "psnr_bicubic_stored8": round(float(np.mean(pb)), 2),
           "ort_vs_torch_maxabs": err, "tiling_maxabs": terr,
           "onnx_bytes": os.path.getsize(onnx_path)}
    print(json.dumps(res, indent=1))
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
