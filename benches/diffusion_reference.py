#!/usr/bin/env python3
"""Reference side of `reelbox bench diffusion`: times diffusers' OnnxStableDiffusionPipeline
on an SD model in the ONNX layout, with the same ONNX Runtime build, threads, steps,
scheduler and guidance as the Rust side, and prints one JSON object.

The pipeline always sends int32 ids, a [1] timestep and a CFG batch of 2; a thin session
shim casts/reshapes inputs to what the export declares (the adaptation reelbox does too)
and splits the batch for exports whose UNet batch axis is fixed.

Usage:
  python benches/diffusion_reference.py --model tests/fixtures/models/tiny-sd \
      --size 64 --steps 20 --threads 1 --scheduler euler --guidance 7.5 --repeat 5
  ... --serve   (one timed image per stdin line; used by `reelbox bench diffusion`)
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

NP_OF_ORT = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32}


class Session:
    """Wraps an InferenceSession: adapts inputs and accumulates time spent in run()."""

    clock = 0.0

    def __init__(self, path, threads):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.s = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        self.meta = {i.name: i for i in self.s.get_inputs()}

    def get_inputs(self):
        return self.s.get_inputs()

    def get_outputs(self):
        return self.s.get_outputs()

    def _run(self, names, feeds):
        t = time.perf_counter()
        out = self.s.run(names, feeds)
        Session.clock += time.perf_counter() - t
        return out

    def run(self, names, feeds):
        feeds = {k: np.asarray(v).astype(NP_OF_ORT[self.meta[k].type], copy=False) for k, v in feeds.items()}
        if "timestep" in self.meta and len(self.meta["timestep"].shape) == 0:
            feeds["timestep"] = feeds["timestep"].reshape(())
        sample = self.meta.get("sample")
        if sample is not None and isinstance(sample.shape[0], int) and feeds["sample"].shape[0] > sample.shape[0]:
            outs = []
            for i in range(feeds["sample"].shape[0]):
                f = {k: (v[i:i + 1] if v.ndim and k != "timestep" else v) for k, v in feeds.items()}
                outs.append(self._run(names, f)[0])
            return [np.concatenate(outs)]
        return self._run(names, feeds)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scheduler", default="euler", choices=["euler", "euler_a", "ddim", "dpmpp_2m", "lcm"])
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--serve", action="store_true",
                    help="after warm-up print 'ready', then time one image per stdin line (the seed) and print "
                         "its JSON; lets the caller interleave its own runs with these on a busy machine")
    args = ap.parse_args()

    import diffusers
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           EulerDiscreteScheduler, LCMScheduler, OnnxRuntimeModel, OnnxStableDiffusionPipeline)
    from transformers import CLIPTokenizer
    import torch

    torch.set_num_threads(args.threads)
    diffusers.utils.logging.set_verbosity_error()
    classes = {"euler": EulerDiscreteScheduler, "euler_a": EulerAncestralDiscreteScheduler, "ddim": DDIMScheduler,
               "dpmpp_2m": DPMSolverMultistepScheduler, "lcm": LCMScheduler}
    with open(os.path.join(args.model, "scheduler", "scheduler_config.json")) as f:
        sched_cfg = json.load(f)
    sched = classes[args.scheduler].from_config(sched_cfg)
    # The ONNX pipeline multiplies numpy latents by init_noise_sigma; Euler's is a 0-d
    # tensor, which would turn the latents into a torch tensor mid-pipeline.
    cls = type(sched)
    prop = cls.__dict__.get("init_noise_sigma")
    if isinstance(prop, property):
        fget = prop.fget
        sched.__class__ = type(cls.__name__, (cls,), {"init_noise_sigma": property(lambda s: float(fget(s)))})

    part = lambda name: OnnxRuntimeModel(Session(os.path.join(args.model, name, "model.onnx"), args.threads))  # noqa: E731
    pipe = OnnxStableDiffusionPipeline(
        vae_encoder=None, vae_decoder=part("vae_decoder"), text_encoder=part("text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(os.path.join(args.model, "tokenizer")), unet=part("unet"),
        scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def once(seed):
        Session.clock = 0.0
        gen = np.random.RandomState(seed)
        t = time.perf_counter()
        pipe(prompt="a photo of an astronaut riding a horse on mars", negative_prompt="blurry, low quality",
             height=args.size, width=args.size, num_inference_steps=args.steps, guidance_scale=args.guidance,
             generator=gen, output_type="np")
        return time.perf_counter() - t, Session.clock

    for i in range(args.warmup):
        once(i)
    if args.serve:
        print(json.dumps({"ready": True, "implementation": f"diffusers {diffusers.__version__} OnnxStableDiffusionPipeline",
                          "onnxruntime": ort.__version__}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                break
            wall, onnx = once(int(line))
            print(json.dumps({"wall_s": wall, "onnx_s": onnx}), flush=True)
        return 0
    runs = [once(100 + i) for i in range(args.repeat)]
    walls = [w for w, _ in runs]
    onnx = [o for _, o in runs]
    print(json.dumps({
        "implementation": f"diffusers {diffusers.__version__} OnnxStableDiffusionPipeline",
        "onnxruntime": ort.__version__,
        "size": args.size, "steps": args.steps, "threads": args.threads, "scheduler": args.scheduler,
        "guidance": args.guidance,
        "wall_s": walls, "onnx_s": onnx,
        "median_wall_s": statistics.median(walls), "median_onnx_s": statistics.median(onnx),
    }))


if __name__ == "__main__":
    sys.exit(main())
