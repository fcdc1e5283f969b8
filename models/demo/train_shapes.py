"""Train the reelbox demo "shapes" text-to-image model, exported in the Stable Diffusion
ONNX layout (optimum style): tokenizer/, text_encoder/, unet/, vae_encoder/, vae_decoder/,
scheduler/, model_index.json.

Data: synthetic captions "a red circle on the left and a blue square on the right on a
yellow background" (synth.py grammar: 8 colours, 4 shapes, optional positions, 1-2 shapes)
with 64x64 renders. 44 held-out caption contents (captions_heldout.json) never appear in
training, in any order or phrasing.

Stages (all CPU, fixed seeds):
 1. CLIP-format byte-level BPE tokenizer trained on the training captions.
 2. VAE (KL autoencoder, 64x64x3 <-> 4x8x8), trained on 32x32 crops.
 3. Latents of the training images; scaling_factor = 1 / std(latents).
 4. Text encoder (2-layer transformer, D=64) + UNet (2 levels, self+cross attention)
    trained jointly, epsilon prediction, scaled_linear betas 0.00085..0.012 over 1000
    steps, 10% caption dropout, min-SNR-5 loss weights, EMA weights exported.
 5. ONNX export + onnxruntime checks + the quality gates with an Euler sampler.

Usage: python train_shapes.py [--vae-steps N] [--unet-steps N] [--out DIR]
"""
import argparse
import json
import math
import os
import random
import time
from collections import Counter

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import synth

HERE = os.path.dirname(os.path.abspath(__file__))
MAXLEN = 77


# ============================================================ models
class VAEEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(48, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(),
            nn.Conv2d(64, 8, 1),
        )

    def forward(self, sample):
        return self.net(sample)   # latent_parameters: mean (0..3), logvar (4..7)


class VAEDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(4, 64, 3, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(),
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(),
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(64, 48, 3, padding=1), nn.SiLU(),
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(48, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 3, 3, padding=1),
        )

    def forward(self, latent_sample):
        return self.net(latent_sample)


class Attn(nn.Module):
    def __init__(self, dim, ctx_dim, heads):
        super().__init__()
        self.h = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(ctx_dim, dim, bias=False)
        self.v = nn.Linear(ctx_dim, dim, bias=False)
        self.o = nn.Linear(dim, dim)

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.h, C // self.h).transpose(1, 2)
        k = self.k(ctx).reshape(B, -1, self.h, C // self.h).transpose(1, 2)
        v = self.v(ctx).reshape(B, -1, self.h, C // self.h).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(C // self.h)), -1)
        return self.o((a @ v).transpose(1, 2).reshape(B, N, C))


class TextEncoder(nn.Module):
    def __init__(self, vocab, D=64, layers=2, heads=4):
        super().__init__()
        self.tok = nn.Embedding(vocab, D)
        self.pos = nn.Parameter(torch.randn(MAXLEN, D) * 0.02)
        self.layers = nn.ModuleList()
        for _ in range(layers):
            self.layers.append(nn.ModuleDict({
                "ln1": nn.LayerNorm(D), "attn": Attn(D, D, heads), "ln2": nn.LayerNorm(D),
                "ff": nn.Sequential(nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D))}))
        self.ln = nn.LayerNorm(D)

    def forward(self, input_ids):
        h = self.tok(input_ids) + self.pos
        for l in self.layers:
            h = h + l["attn"](l["ln1"](h))
            h = h + l["ff"](l["ln2"](h))
        return self.ln(h)


class TextEncoderExport(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        h = self.m(input_ids)
        # pooler_output as CLIP: the hidden state at the first EOS (= argmax id, EOS is the top id)
        idx = input_ids.argmax(-1)
        pooled = h[torch.arange(h.shape[0]), idx]
        return h, pooled


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.reshape(-1, 1).float() * freqs.reshape(1, -1)
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim):
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2 = nn.GroupNorm(8, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(temb).unsqueeze(-1).unsqueeze(-1)
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class XBlock(nn.Module):
    """Spatial transformer: self-attention, cross-attention to the text, feed-forward."""

    def __init__(self, c, ctx, heads=4):
        super().__init__()
        self.norm = nn.GroupNorm(8, c)
        self.pin = nn.Linear(c, c)
        self.l1, self.a1 = nn.LayerNorm(c), Attn(c, c, heads)
        self.l2, self.a2 = nn.LayerNorm(c), Attn(c, ctx, heads)
        self.l3 = nn.LayerNorm(c)
        self.ff = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
        self.pout = nn.Linear(c, c)

    def forward(self, x, ctx):
        h = self.pin(self.norm(x).flatten(2).transpose(1, 2))
        h = h + self.a1(self.l1(h))
        h = h + self.a2(self.l2(h), ctx)
        h = h + self.ff(self.l3(h))
        h = self.pout(h)
        return x + h.transpose(1, 2).reshape_as(x)


class UNet(nn.Module):
    def __init__(self, ctx_dim=64, c1=64, c2=64, tdim=128):
        super().__init__()
        self.c1 = c1
        self.temb = nn.Sequential(nn.Linear(c1, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.cin = nn.Conv2d(4, c1, 3, padding=1)
        self.r1, self.x1 = ResBlock(c1, c1, tdim), XBlock(c1, ctx_dim)
        self.down = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.r2, self.x2 = ResBlock(c1, c2, tdim), XBlock(c2, ctx_dim)
        self.rm, self.xm = ResBlock(c2, c2, tdim), XBlock(c2, ctx_dim)
        self.r3, self.x3 = ResBlock(c2 + c2, c2, tdim), XBlock(c2, ctx_dim)
        self.up = nn.Conv2d(c2, c1, 3, padding=1)
        self.r4, self.x4 = ResBlock(c1 + c1, c1, tdim), XBlock(c1, ctx_dim)
        self.nout = nn.GroupNorm(8, c1)
        self.cout = nn.Conv2d(c1, 4, 3, padding=1)
        nn.init.zeros_(self.cout.weight)
        nn.init.zeros_(self.cout.bias)

    def forward(self, sample, timestep, encoder_hidden_states):
        te = self.temb(timestep_embedding(timestep, self.c1))   # [1 or B, tdim]
        ctx = encoder_hidden_states
        h0 = self.cin(sample)
        h1 = self.x1(self.r1(h0, te), ctx)
        h = self.down(h1)
        h2 = self.x2(self.r2(h, te), ctx)
        h = self.xm(self.rm(h2, te), ctx)
        h = self.x3(self.r3(torch.cat([h, h2], 1), te), ctx)
        h = self.up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.x4(self.r4(torch.cat([h, h1], 1), te), ctx)
        return self.cout(F.silu(self.nout(h)))


# ============================================================ schedule / sampling
def sd_schedule():
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float32) ** 2
    ac = np.cumprod(1.0 - betas.astype(np.float64)).astype(np.float32)
    return betas, ac


def euler_sample(unet_fn, cond, uncond, latents0, steps=20, guidance=5.0, spacing="trailing"):
    """diffusers EulerDiscreteScheduler (epsilon), numpy. unet_fn(x, t_float, ctx) -> eps."""
    _, ac = sd_schedule()
    sig_all = np.sqrt((1 - ac) / ac)
    if spacing == "trailing":
        ts = np.round(np.arange(1000, 0, -1000 / steps)).astype(np.float32) - 1
        init = sig_all.max()
    elif spacing == "leading":
        ts = (np.arange(0, steps) * (1000 // steps)).round()[::-1].astype(np.float32) + 1
        init = math.sqrt(sig_all.max() ** 2 + 1)
    else:
        ts = np.linspace(0, 999, steps, dtype=np.float32)[::-1].copy()
        init = sig_all.max()
    sig = np.interp(ts, np.arange(1000), sig_all).astype(np.float32)
    sig = np.append(sig, 0.0).astype(np.float32)
    x = latents0 * init
    B = x.shape[0]
    for i, t in enumerate(ts):
        s = sig[i]
        inp = (x / math.sqrt(s * s + 1)).astype(np.float32)
        if guidance > 1:
            eps = unet_fn(np.concatenate([inp, inp]), np.float32(t), np.concatenate([uncond, cond]))
            eu, ec = eps[:B], eps[B:]
            eps = eu + guidance * (ec - eu)
        else:
            eps = unet_fn(inp, np.float32(t), cond)
        x0 = x - s * eps
        x = x + (x - x0) / s * (sig[i + 1] - s)
    return x


def ddim_sample(unet_fn, cond, uncond, latents0, steps=20, guidance=5.0):
    _, ac = sd_schedule()
    ts = (np.round(np.arange(1000, 0, -1000 / steps)) - 1).astype(np.int64)
    x = latents0.copy()
    B = x.shape[0]
    for i, t in enumerate(ts):
        a = ac[t]
        ap = ac[ts[i + 1]] if i + 1 < len(ts) else 1.0
        if guidance > 1:
            eps = unet_fn(np.concatenate([x, x]), np.float32(t), np.concatenate([uncond, cond]))
            eps = eps[:B] + guidance * (eps[B:] - eps[:B])
        else:
            eps = unet_fn(x, np.float32(t), cond)
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        x = math.sqrt(ap) * x0 + math.sqrt(1 - ap) * eps
    return x


# ============================================================ main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vae-steps", type=int, default=1500)
    ap.add_argument("--unet-steps", type=int, default=4000)
    ap.add_argument("--n-train", type=int, default=16000)
    ap.add_argument("--out", default=os.path.join(HERE, "shapes"))
    ap.add_argument("--state", default="/tmp/reelbox_shapes_state.pt")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a busy 2-core machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    out = args.out
    os.makedirs(out, exist_ok=True)
    T0 = time.time()
    timings = {}

    # ---------------------------------------------------------------- data
    held = synth.heldout_items(44, seed=1234)
    exclude = {synth.combo_key(h) for h in held}
    items = synth.training_items(args.n_train, seed=5, exclude=exclude)
    caps = [synth.caption_text(it) for it in items]
    held_caps = [synth.caption_text(h) for h in held]
    assert not set(caps) & set(held_caps)
    rng = random.Random(11)
    imgs = np.stack([synth.render(it, 64, rng) for it in items])
    print(f"rendered {len(imgs)} images in {time.time() - T0:.0f}s", flush=True)

    # ---------------------------------------------------------------- tokenizer
    wc = Counter(w for c in caps for w in c.lower().split())
    vocab, merges = synth.train_clip_bpe(dict(wc))
    synth.write_tokenizer(os.path.join(out, "tokenizer"), vocab, merges)
    tok = synth.SimpleClipTokenizer(vocab, merges)
    from transformers import CLIPTokenizer
    hf = CLIPTokenizer.from_pretrained(os.path.join(out, "tokenizer"))
    for c in caps[:50] + held_caps + [""]:
        ref = hf(c, padding="max_length", max_length=MAXLEN, truncation=True)["input_ids"]
        assert ref == tok(c), (c, ref[:12], tok(c)[:12])
    print(f"tokenizer: {len(vocab)} tokens, {len(merges)} merges; matches transformers.CLIPTokenizer",
          flush=True)
    with open(os.path.join(out, "palette.json"), "w") as f:
        json.dump({"colours": {k: list(v) for k, v in synth.PALETTE.items()},
                   "shapes": synth.SHAPES,
                   "presence_min_pixels_frac": synth.PRESENCE_MIN_PIXELS_FRAC,
                   "presence_max_rgb_distance": synth.PRESENCE_MAX_DIST,
                   "rule": "each pixel -> nearest palette colour (euclidean RGB); dominant = most "
                           "frequent; a shape colour is present when >= presence_min_pixels_frac of "
                           "the pixels are nearest to it AND within presence_max_rgb_distance"},
                  f, indent=1)
    with open(os.path.join(out, "captions_heldout.json"), "w") as f:
        json.dump([{"caption": synth.caption_text(h), "background": h["background"],
                    "shapes": [{"colour": s["colour"], "kind": s["kind"], "position": s["position"]}
                               for s in h["shapes"]]} for h in held], f, indent=1)

    X = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    ids_all = torch.tensor([tok(c) for c in caps], dtype=torch.int64)
    empty_ids = torch.tensor(tok(""), dtype=torch.int64)

    enc, dec = VAEEncoder(), VAEDecoder()
    te = TextEncoder(len(vocab))
    unet = UNet()
    n_vae = sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in dec.parameters())
    n_te = sum(p.numel() for p in te.parameters())
    n_unet = sum(p.numel() for p in unet.parameters())
    print(f"params: vae {n_vae}, text {n_te}, unet {n_unet}", flush=True)

    if args.eval_only:
        st = torch.load(args.state)
        enc.load_state_dict(st["enc"]); dec.load_state_dict(st["dec"])
        te.load_state_dict(st["te"]); unet.load_state_dict(st["unet"])
        scaling = st["scaling"]
        timings = st["timings"]
    else:
        # ------------------------------------------------------------ VAE
        t1 = time.time()
        g = torch.Generator().manual_seed(1)
        opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=2e-3)
        sch = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.vae_steps, pct_start=0.05)
        for step in range(args.vae_steps):
            idx = torch.randint(0, len(X), (32,), generator=g)
            oy, ox = [int(v) * 8 for v in torch.randint(0, 5, (2,), generator=g)]
            xb = X[idx, :, oy:oy + 32, ox:ox + 32]
            p = enc(xb)
            mu, lv = p[:, :4], p[:, 4:].clamp(-20, 10)
            z = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=g)
            rec = dec(z)
            kl = 0.5 * (mu ** 2 + lv.exp() - 1 - lv).mean()
            loss = (rec - xb).abs().mean() + 0.5 * ((rec - xb) ** 2).mean() + 1e-4 * kl
            opt.zero_grad(); loss.backward(); opt.step(); sch.step()
            if step % 200 == 0 or step == args.vae_steps - 1:
                print(f"vae {step} loss {loss.item():.4f} kl {kl.item():.2f} {time.time() - t1:.0f}s",
                      flush=True)
        timings["vae_s"] = round(time.time() - t1, 1)
        enc.eval(); dec.eval()
        with torch.no_grad():
            lat = torch.cat([enc(X[i:i + 256])[:, :4] for i in range(0, len(X), 256)])
        scaling = float(1.0 / lat.std())
        print(f"latent std {lat.std():.4f} mean {lat.mean():.4f} -> scaling_factor {scaling:.5f}", flush=True)
        LAT = lat * scaling

        # ------------------------------------------------------------ text encoder + UNet
        t2 = time.time()
        betas, ac = sd_schedule()
        AC = torch.from_numpy(ac)
        params = list(te.parameters()) + list(unet.parameters())
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
        sch = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=args.unet_steps, pct_start=0.03)
        ema_te = {k: v.detach().clone() for k, v in te.state_dict().items()}
        ema_un = {k: v.detach().clone() for k, v in unet.state_dict().items()}
        g = torch.Generator().manual_seed(2)
        B = 64
        for step in range(args.unet_steps):
            idx = torch.randint(0, len(LAT), (B,), generator=g)
            x0 = LAT[idx]
            ids = ids_all[idx].clone()
            drop = torch.rand(B, generator=g) < 0.1
            ids[drop] = empty_ids
            t = torch.randint(0, 1000, (B,), generator=g)
            noise = torch.randn(x0.shape, generator=g)
            a = AC[t].view(B, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            eps = unet(xt, t.float(), te(ids))
            snr = AC[t] / (1 - AC[t])
            w = torch.clamp(snr, max=5.0) / snr
            loss = (w * ((eps - noise) ** 2).mean((1, 2, 3))).mean()
            opt.zero_grad(); loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step(); sch.step()
            d = min(0.999, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, v in te.state_dict().items():
                    ema_te[k].mul_(d).add_(v.detach(), alpha=1 - d) if v.dtype.is_floating_point else ema_te[k].copy_(v)
                for k, v in unet.state_dict().items():
                    ema_un[k].mul_(d).add_(v.detach(), alpha=1 - d) if v.dtype.is_floating_point else ema_un[k].copy_(v)
            if step % 200 == 0 or step == args.unet_steps - 1:
                print(f"unet {step} loss {loss.item():.4f} {time.time() - t2:.0f}s", flush=True)
        te.load_state_dict(ema_te)
        unet.load_state_dict(ema_un)
        timings["unet_s"] = round(time.time() - t2, 1)
        torch.save({"enc": enc.state_dict(), "dec": dec.state_dict(), "te": te.state_dict(),
                    "unet": unet.state_dict(), "scaling": scaling, "timings": timings}, args.state)
    enc.eval(); dec.eval(); te.eval(); unet.eval()

    # ---------------------------------------------------------------- export
    def exp(model, inputs, path, in_names, out_names, dyn):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.onnx.export(model, inputs, path, input_names=in_names, output_names=out_names,
                          dynamic_axes=dyn, opset_version=17, dynamo=False)

    exp(TextEncoderExport(te), (torch.tensor([tok("a red circle on a blue background")]),),
        f"{out}/text_encoder/model.onnx", ["input_ids"], ["last_hidden_state", "pooler_output"],
        {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}, "pooler_output": {0: "batch"}})
    exp(unet, (torch.randn(2, 4, 8, 8), torch.tensor(500.0), torch.randn(2, MAXLEN, 64)),
        f"{out}/unet/model.onnx", ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
        {"sample": {0: "batch", 2: "height", 3: "width"}, "encoder_hidden_states": {0: "batch"},
         "out_sample": {0: "batch", 2: "height", 3: "width"}})
    exp(dec, (torch.randn(1, 4, 8, 8),), f"{out}/vae_decoder/model.onnx", ["latent_sample"], ["sample"],
        {"latent_sample": {0: "batch", 2: "height", 3: "width"}, "sample": {0: "batch", 2: "h8", 3: "w8"}})
    exp(enc, (torch.randn(1, 3, 64, 64),), f"{out}/vae_encoder/model.onnx", ["sample"], ["latent_parameters"],
        {"sample": {0: "batch", 2: "height", 3: "width"}, "latent_parameters": {0: "batch", 2: "h8", 3: "w8"}})

    vae_cfg = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.42.1", "in_channels": 3,
               "out_channels": 3, "latent_channels": 4, "sample_size": 64, "scaling_factor": round(scaling, 6),
               "note": "reelbox demo VAE: 4x8x8 latents for 64x64 images (1/8 scale)"}
    for sub in ("vae_decoder", "vae_encoder"):
        with open(f"{out}/{sub}/config.json", "w") as f:
            json.dump(vae_cfg, f, indent=1)
    with open(f"{out}/text_encoder/config.json", "w") as f:
        json.dump({"_name_or_path": "reelbox-demo-shapes", "architectures": ["CLIPTextModel"],
                   "model_type": "clip_text_model", "hidden_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": MAXLEN,
                   "vocab_size": len(vocab), "bos_token_id": vocab["<|startoftext|>"],
                   "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": vocab["<|endoftext|>"]}, f, indent=1)
    with open(f"{out}/unet/config.json", "w") as f:
        json.dump({"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.42.1",
                   "in_channels": 4, "out_channels": 4, "sample_size": 8, "cross_attention_dim": 64,
                   "block_out_channels": [64, 64], "note": "reelbox demo UNet; timestep is a float32 scalar"},
                  f, indent=1)
    os.makedirs(f"{out}/scheduler", exist_ok=True)
    with open(f"{out}/scheduler/scheduler_config.json", "w") as f:
        json.dump({"_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.42.1",
                   "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                   "num_train_timesteps": 1000, "prediction_type": "epsilon",
                   "timestep_spacing": "trailing", "steps_offset": 1, "interpolation_type": "linear",
                   "use_karras_sigmas": False, "trained_betas": None, "clip_sample": False,
                   "set_alpha_to_one": False, "skip_prk_steps": True}, f, indent=1)
    with open(f"{out}/model_index.json", "w") as f:
        json.dump({"_class_name": "OnnxStableDiffusionPipeline", "_diffusers_version": "0.42.1",
                   "feature_extractor": [None, None], "requires_safety_checker": False,
                   "safety_checker": [None, None],
                   "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                   "text_encoder": ["diffusers", "OnnxRuntimeModel"],
                   "tokenizer": ["transformers", "CLIPTokenizer"],
                   "unet": ["diffusers", "OnnxRuntimeModel"],
                   "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
                   "vae_encoder": ["diffusers", "OnnxRuntimeModel"]}, f, indent=1)

    # ---------------------------------------------------------------- ORT checks + gates
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    S = {k: ort.InferenceSession(f"{out}/{k}/model.onnx", so, providers=["CPUExecutionProvider"])
         for k in ("text_encoder", "unet", "vae_decoder", "vae_encoder")}
    ids = np.array([tok(c) for c in held_caps[:2]], dtype=np.int64)
    hs = S["text_encoder"].run(["last_hidden_state"], {"input_ids": ids})[0]
    with torch.no_grad():
        hs_t = te(torch.from_numpy(ids)).numpy()
    errs = {"text_encoder": float(np.abs(hs - hs_t).max())}
    xs = np.random.default_rng(0).standard_normal((2, 4, 8, 8)).astype(np.float32)
    o = S["unet"].run(None, {"sample": xs, "timestep": np.array(321.0, np.float32), "encoder_hidden_states": hs})[0]
    with torch.no_grad():
        o_t = unet(torch.from_numpy(xs), torch.tensor(321.0), torch.from_numpy(hs)).numpy()
    errs["unet"] = float(np.abs(o - o_t).max())
    # VAE reconstruction quality on held-out renders
    rng = random.Random(99)
    test_imgs = np.stack([synth.render(h, 64, rng) for h in held])
    xt = (test_imgs.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
    lp = S["vae_encoder"].run(None, {"sample": xt})[0]
    rec = S["vae_decoder"].run(None, {"latent_sample": lp[:, :4]})[0]
    rec_u8 = ((np.clip(rec / 2 + 0.5, 0, 1)) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    vae_psnr = float(np.mean([10 * np.log10(255 ** 2 / max(1e-9, np.mean((a.astype(float) - b) ** 2)))
                              for a, b in zip(rec_u8, test_imgs)]))
    errs["vae_recon_psnr_db"] = round(vae_psnr, 2)
    print("checks", errs, flush=True)

    def unet_fn(x, t, ctx):
        return S["unet"].run(None, {"sample": x.astype(np.float32), "timestep": np.array(t, np.float32),
                                    "encoder_hidden_states": ctx.astype(np.float32)})[0]

    held_ids = np.array([tok(c) for c in held_caps], dtype=np.int64)
    cond = S["text_encoder"].run(["last_hidden_state"], {"input_ids": held_ids})[0]
    unc1 = S["text_encoder"].run(["last_hidden_state"], {"input_ids": np.array([tok("")], np.int64)})[0]

    def gate(sampler, steps, guidance, seeds=(0, 1, 2), **kw):
        bg_ok = sh_ok = n = 0
        imgs_out = []
        for seed in seeds:
            lat0 = np.random.default_rng(seed).standard_normal((len(held), 4, 8, 8)).astype(np.float32)
            unc = np.repeat(unc1, len(held), 0)
            lat = sampler(unet_fn, cond, unc, lat0, steps=steps, guidance=guidance, **kw)
            im = S["vae_decoder"].run(None, {"latent_sample": (lat / scaling).astype(np.float32)})[0]
            im = (np.clip(im / 2 + 0.5, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
            for img, h in zip(im, held):
                b, s_ = synth.evaluate_item(img, h)
                bg_ok += b; sh_ok += s_; n += 1
            imgs_out.append(im)
        return bg_ok / n, sh_ok / n, imgs_out

    results = {}
    t3 = time.time()
    for name, sampler, steps, gsc, kw in [
            ("euler_trailing_20_g5", euler_sample, 20, 5.0, {}),
            ("euler_trailing_20_g3", euler_sample, 20, 3.0, {}),
            ("euler_trailing_20_g7", euler_sample, 20, 7.0, {}),
            ("euler_leading_20_g5", euler_sample, 20, 5.0, {"spacing": "leading"}),
            ("ddim_trailing_20_g5", ddim_sample, 20, 5.0, {}),
            ("euler_trailing_10_g5", euler_sample, 10, 5.0, {})]:
        seeds = (0, 1, 2) if name == "euler_trailing_20_g5" else (0,)
        bg, sh, ims = gate(sampler, steps, gsc, seeds=seeds, **kw)
        results[name] = {"background_dominant": round(bg, 3), "shape_colours_present": round(sh, 3)}
        print(name, results[name], flush=True)
        if name == "euler_trailing_20_g5":
            from PIL import Image
            sheet = np.concatenate([np.concatenate(list(im[:22]), 1) for im in ims[:1]] +
                                   [np.concatenate(list(ims[0][22:44]), 1)], 0)
            Image.fromarray(sheet).save("/tmp/shapes_sheet.png")
    timings["eval_s"] = round(time.time() - t3, 1)
    # training-caption fit for reference (first 44 training captions)
    metrics = {"params": {"vae_encoder": sum(p.numel() for p in enc.parameters()),
                          "vae_decoder": sum(p.numel() for p in dec.parameters()),
                          "text_encoder": n_te, "unet": n_unet},
               "vocab_size": len(vocab), "merges": len(merges), "scaling_factor": scaling,
               "vae_steps": args.vae_steps, "unet_steps": args.unet_steps, "n_train": args.n_train,
               "timings": timings, "checks": errs, "gates_heldout_44_captions": results,
               "onnx_bytes": {k: os.path.getsize(f"{out}/{k}/model.onnx") for k in S}}
    print(json.dumps(metrics, indent=1))
    with open(f"{out}/metrics.json", "w") as f:
        json.dump(metrics, f, indent=1)


if __name__ == "__main__":
    main()
