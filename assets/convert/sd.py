"""Stable Diffusion 1.x/2.x and SDXL: a diffusers folder -> the optimum ONNX layout reelbox's
diffusion pipeline loads (text_encoder, unet with external weights, vae_decoder,
vae_encoder, tokenizer, scheduler, model_index.json; SDXL adds text_encoder_2 and
tokenizer_2, and its UNet takes text_embeds and time_ids), plus the self-check references:
one UNet step on fixed inputs and a 4-step 64x64 image at a fixed seed through diffusers.
"""
import contextlib
import json
import os
import shutil

from convert import OPSET, Refused, progress, save_tensor, setup_torch

# The self-check's image: reelbox's pipeline repeats exactly this (Rust reads it from RESULT).
CHECK = {"prompt": "a photo of a cat", "steps": 4, "guidance": 7.5, "size": 64, "seed": 0,
         "scheduler": "euler", "timestep": 500.0}
TOTAL = 6


class _TextEncoder:
    @staticmethod
    @contextlib.contextmanager
    def wrap(torch, te, xl=False):
        """last_hidden_state and pooler_output (the second SDXL encoder: the projected
        text_embeds first, as optimum exports it), then every layer's output, for clip skip:
        SDXL's as they are, hidden_states.N (reelbox conditions on the penultimate, and skips
        from there), SD 1.x/2.x's through the final layer norm, normed_hidden_states.N (what
        A1111, ComfyUI and diffusers condition on when they skip layers of those).
        Textual inversion: embedding_vectors replace the token embeddings (before positions
        are added) where embedding_mask is true, as A1111's EmbeddingsWithFixes does. The
        encoder's own token embedding is back in place when the block ends."""
        projected = hasattr(te, "text_projection")
        norm = _final_layer_norm(te)
        table = te.get_input_embeddings()

        class Embeddings(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.table = table
                self.mask = self.vectors = None

            def forward(self, input_ids):
                rows = self.table(input_ids)
                return torch.where(self.mask.unsqueeze(-1), self.vectors.to(rows.dtype), rows)

        swap = Embeddings()

        class W(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.te = te

            def forward(self, input_ids, embedding_mask, embedding_vectors):
                swap.mask, swap.vectors = embedding_mask, embedding_vectors
                out = self.te(input_ids=input_ids, output_hidden_states=True, return_dict=True)
                swap.mask = swap.vectors = None
                res = (out.text_embeds, out.last_hidden_state) if projected else (out.last_hidden_state, out.pooler_output)
                layers = tuple(out.hidden_states) if xl else tuple(norm(h) for h in out.hidden_states)
                return res + layers

        te.set_input_embeddings(swap)
        try:
            yield W()
        finally:
            te.set_input_embeddings(table)


def _final_layer_norm(te):
    """A CLIP text encoder's final layer norm (transformers 5 keeps it on CLIPTextModel
    itself, earlier versions and CLIPTextModelWithProjection on its text_model)."""
    return getattr(te, "text_model", te).final_layer_norm


def _unet_wrap(torch, unet, xl=False):
    class W(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    class XL(W):
        def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
            cond = {"text_embeds": text_embeds, "time_ids": time_ids}
            return self.unet(sample, timestep, encoder_hidden_states, added_cond_kwargs=cond, return_dict=False)[0]

    return XL() if xl else W()


def _pooled_dim(unet):
    """SDXL's pooled text embedding width: what the added conditioning takes besides time ids."""
    return unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim


def _vae_wraps(torch, vae):
    class Dec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, latent_sample):
            return self.vae.decode(latent_sample, return_dict=False)[0]

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, sample):
            return self.vae.encode(sample).latent_dist.parameters

    return Dec(), Enc()


def _export(torch, module, args, path, inputs, outputs, axes, external=False):
    import onnx

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    if external:
        # Real UNets pass protobuf's 2 GB limit: weights always go beside the graph.
        m = onnx.load(path)
        for f in os.listdir(os.path.dirname(path)):
            if f != "model.onnx":
                os.remove(os.path.join(os.path.dirname(path), f))
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.onnx_data", size_threshold=1024)


def _jsonable(cfg):
    out = {}
    for k, v in dict(cfg).items():
        if k.startswith("_") and k not in ("_class_name", "_diffusers_version"):
            continue
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, float) and v != v:
            v = None
        out[k] = v
    return out


def _write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)


def _tokenizer(tok, out, sub="tokenizer"):
    """vocab.json + merges.txt (what reelbox's CLIP tokenizer reads) beside the configs."""
    dst = os.path.join(out, sub)
    tok.save_pretrained(dst)
    if not os.path.isfile(os.path.join(dst, "vocab.json")):
        # Newer transformers save only tokenizer.json: its BPE model holds both.
        with open(os.path.join(dst, "tokenizer.json"), encoding="utf-8") as f:
            model = json.load(f)["model"]
        with open(os.path.join(dst, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(model["vocab"], f, ensure_ascii=False)
        with open(os.path.join(dst, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for m in model["merges"]:
                f.write((m if isinstance(m, str) else " ".join(m)) + "\n")


def load_pipeline(path):
    """A diffusers StableDiffusion(XL)Pipeline from a local folder (never the hub)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch = setup_torch()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    try:
        index = json.load(open(os.path.join(path, "model_index.json"), encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise Refused(f"{path}: model_index.json is not readable ({e})")
    xl = "XL" in index.get("_class_name", "") or "text_encoder_2" in index
    # A refiner's index lists its first text encoder as [null, null], or not at all.
    if xl and not (index.get("text_encoder") or [None])[0]:
        raise Refused(f"{path}: an SDXL refiner (no first text encoder); only SDXL base models are converted")
    try:
        if xl:
            pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(
                path, torch_dtype=torch.float32, add_watermarker=False, local_files_only=True)
        else:
            pipe = diffusers.StableDiffusionPipeline.from_pretrained(
                path, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False,
                local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the folder does not load
        what = "SDXL" if xl else "Stable Diffusion"
        raise Refused(f"{path}: not a loadable {what} folder ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    return pipe


def _load_loras(pipe, loras):
    """Loads each `(file, scale)` LoRA as an active adapter; returns their details."""
    from safetensors import safe_open

    names, scales, out = [], [], []
    for i, (file, scale) in enumerate(loras):
        flag = f"--lora {file}"
        try:
            with safe_open(file, framework="pt") as f:
                keys = list(f.keys())
        except Exception as e:  # noqa: BLE001 - any failure means the file is unreadable
            raise Refused(f"{flag}: not a readable .safetensors LoRA ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
        # kohya/sd-scripts: SD's text encoder is lora_te_, SDXL's two are lora_te1_/lora_te2_
        kohya = any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys)
        if not kohya and not any(".lora_A." in k or ".lora_down." in k or ".lora.down." in k for k in keys):
            raise Refused(f"{flag}: not a LoRA (no lora_A/lora_down weights)")
        name = f"lora{i}"
        try:
            pipe.load_lora_weights(file, adapter_name=name)
        except Exception as e:  # noqa: BLE001 - the message says what did not fit
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            why = next((ln for ln in lines if ln.startswith("size mismatch")), lines[0] if lines else type(e).__name__)
            raise Refused(f"{flag}: does not fit this base model, a LoRA for another architecture? ({why[:240]})")
        if not any(name in a for a in pipe.get_list_adapters().values()):
            raise Refused(f"{flag}: none of its layers are in this base model (a LoRA for another architecture?)")
        names.append(name)
        scales.append(scale)
        out.append({"name": os.path.splitext(os.path.basename(file))[0], "file": file, "scale": scale,
                    "format": "kohya" if kohya else "diffusers"})
    pipe.set_adapters(names, adapter_weights=scales)
    return names, out


def _is_xl(pipe):
    return getattr(pipe, "text_encoder_2", None) is not None


def _references(torch, diffusers, pipe, check_dir):
    """The self-check's references: one UNet step on fixed random inputs, and a full image
    with the model's own noise schedule under Euler (deterministic)."""
    ch = pipe.unet.config.in_channels
    max_len = pipe.tokenizer.model_max_length
    g = torch.Generator().manual_seed(1234)
    lat = CHECK["size"] // pipe.vae_scale_factor
    sample = torch.randn(1, ch, lat, lat, generator=g)
    ehs = torch.randn(1, max_len, pipe.unet.config.cross_attention_dim, generator=g)
    check = {}
    cond = None
    if _is_xl(pipe):
        # SDXL's added conditioning: a pooled embedding, and the size/crop ids of the check image
        size = float(CHECK["size"])
        cond = {"text_embeds": torch.randn(1, _pooled_dim(pipe.unet), generator=g),
                "time_ids": torch.tensor([[size, size, 0.0, 0.0, size, size]])}
        check["unet_text_embeds"] = save_tensor(check_dir, "unet_text_embeds", cond["text_embeds"])
        check["unet_time_ids"] = save_tensor(check_dir, "unet_time_ids", cond["time_ids"])
    with torch.no_grad():
        eps = pipe.unet(sample, torch.tensor(CHECK["timestep"]), ehs, added_cond_kwargs=cond, return_dict=False)[0]
    check.update({"unet_sample": save_tensor(check_dir, "unet_sample", sample),
                  "unet_hidden": save_tensor(check_dir, "unet_hidden", ehs),
                  "unet_expected": save_tensor(check_dir, "unet_expected", eps)})
    progress(2, TOTAL, "computed the PyTorch reference UNet step")
    own = pipe.scheduler
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(own.config)
    latents = torch.randn(1, ch, lat, lat, generator=torch.Generator().manual_seed(CHECK["seed"]))
    with torch.no_grad():
        img = pipe(CHECK["prompt"], negative_prompt="", num_inference_steps=CHECK["steps"],
                   guidance_scale=CHECK["guidance"], height=CHECK["size"], width=CHECK["size"],
                   latents=latents.clone(), output_type="np").images
    pipe.scheduler = own
    image = torch.from_numpy(img).permute(0, 3, 1, 2).contiguous()
    check["latents"] = save_tensor(check_dir, "latents", latents)
    check["image_expected"] = save_tensor(check_dir, "image_expected", image)
    check["clip_skip_expected"] = save_tensor(check_dir, "clip_skip_expected", _skipped_prompt(torch, pipe))
    progress(3, TOTAL, f"computed the PyTorch reference image ({CHECK['steps']} steps, seed {CHECK['seed']})")
    return check


def _skipped_prompt(torch, pipe):
    """The check prompt's conditioning one text encoder layer short of the model's own, as
    A1111 reads "Clip skip: 2" on SD 1.x (the penultimate layer's output through the final
    layer norm) and diffusers' clip_skip=1 on SDXL (each encoder's third layer from its end,
    as it is, joined): the self-check runs reelbox's clip skip against it. (diffusers 0.42's
    own SD path reaches for text_model, which transformers 5's CLIPTextModel no longer has.)"""
    xl = _is_xl(pipe)
    pairs = [(pipe.tokenizer, pipe.text_encoder)] + ([(pipe.tokenizer_2, pipe.text_encoder_2)] if xl else [])
    states = []
    with torch.no_grad():
        for tok, te in pairs:
            ids = tok(CHECK["prompt"], padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids
            hidden = te(ids, output_hidden_states=True).hidden_states
            states.append(hidden[-3] if xl else _final_layer_norm(te)(hidden[-2]))
    return torch.cat(states, dim=-1)


def convert_pipeline(path, pipe, out_dir, check_dir, details=None, loras=()):
    """Exports `pipe` (with `loras` fused in) into `out_dir` and writes the self-check
    references, computed by diffusers with the LoRAs loaded as adapters (not fused), so
    the check covers the fusing too."""
    torch = setup_torch()
    import diffusers

    pipe.set_progress_bar_config(disable=True)
    xl = _is_xl(pipe)
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if xl else [])
    for m in encoders + [pipe.unet, pipe.vae]:
        m.eval().float()
    for te in encoders:
        te.config._attn_implementation = "eager"
    names, fused = _load_loras(pipe, loras) if loras else ([], [])
    progress(1, TOTAL, f"loaded the {'SDXL' if xl else 'Stable Diffusion'} pipeline" + "".join(f" + {f['name']}" for f in fused))
    check = _references(torch, diffusers, pipe, check_dir)
    if names:
        # Scales were set per adapter; lora_scale multiplies them all.
        parts = ["unet", "text_encoder"] + (["text_encoder_2"] if xl else [])
        pipe.fuse_lora(components=parts, lora_scale=1.0, adapter_names=names)
        pipe.unload_lora_weights()
        # total 0: a log line, kept in the job's events (progress steps may be coalesced)
        progress(0, 0, "fused " + ", ".join(f"{f['name']} at {f['scale']:g}" for f in fused))
    max_len = pipe.tokenizer.model_max_length
    ids = torch.zeros((1, max_len), dtype=torch.int64)
    for sub, te in zip(("text_encoder", "text_encoder_2"), encoders):
        first = ["text_embeds", "last_hidden_state"] if sub == "text_encoder_2" else ["last_hidden_state", "pooler_output"]
        names = first + [f"{'hidden_states' if xl else 'normed_hidden_states'}.{i}" for i in range(te.config.num_hidden_layers + 1)]
        # traced with no vector in use; reelbox puts token 0 where one goes (as A1111 does)
        mask = torch.zeros((1, max_len), dtype=torch.bool)
        vectors = torch.zeros((1, max_len, te.config.hidden_size))
        inputs = ["input_ids", "embedding_mask", "embedding_vectors"]
        with _TextEncoder.wrap(torch, te, xl=xl) as w:
            _export(torch, w, (ids, mask, vectors), os.path.join(out_dir, sub, "model.onnx"),
                    inputs, names, {n: {0: "batch_size"} for n in inputs + names})
    progress(4, TOTAL, "exported the text encoder" + ("s" if xl else ""))
    ch = pipe.unet.config.in_channels
    # odd latent size at trace time: the graph then carries skip sizes for any H/W
    unet_args = (torch.randn(2, ch, 9, 7), torch.tensor(999.0), torch.randn(2, max_len, pipe.unet.config.cross_attention_dim))
    unet_in = ["sample", "timestep", "encoder_hidden_states"]
    unet_axes = {"sample": {0: "batch_size", 2: "height", 3: "width"}, "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
                 "out_sample": {0: "batch_size", 2: "height", 3: "width"}}
    if xl:
        unet_args += (torch.randn(2, _pooled_dim(pipe.unet)), torch.randn(2, 6))
        unet_in += ["text_embeds", "time_ids"]
        unet_axes.update({"text_embeds": {0: "batch_size"}, "time_ids": {0: "batch_size"}})
    _export(torch, _unet_wrap(torch, pipe.unet, xl), unet_args, os.path.join(out_dir, "unet", "model.onnx"), unet_in,
            ["out_sample"], unet_axes, external=True)
    progress(5, TOTAL, "exported the UNet (external weights)")
    dec, enc = _vae_wraps(torch, pipe.vae)
    lc = pipe.vae.config.latent_channels
    _export(torch, dec, (torch.randn(1, lc, 8, 8),), os.path.join(out_dir, "vae_decoder", "model.onnx"), ["latent_sample"], ["sample"],
            {"latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"}, "sample": {0: "batch_size", 2: "height", 3: "width"}})
    _export(torch, enc, (torch.rand(1, 3, 64, 64) * 2 - 1,), os.path.join(out_dir, "vae_encoder", "model.onnx"), ["sample"], ["latent_parameters"],
            {"sample": {0: "batch_size", 2: "height", 3: "width"}, "latent_parameters": {0: "batch_size", 2: "latent_height", 3: "latent_width"}})
    progress(6, TOTAL, "exported the VAE decoder and encoder")
    sched = _write_configs(diffusers, pipe, out_dir)
    pred = sched.get("prediction_type", "epsilon")
    base = os.path.basename(os.path.normpath(path))
    if os.path.isfile(path):
        base = os.path.splitext(base)[0]
    # every_text_layer: its text encoders export each layer's output (clip skip reads them);
    # takes_embeddings: they take embedding_mask/embedding_vectors (textual inversion).
    d = {"family": "sdxl" if xl else "sd", "prediction_type": pred, "check": CHECK, "base": base, "loras": fused,
         "every_text_layer": True, "takes_embeddings": True}
    d.update(details or {})
    summary = ("Stable Diffusion XL" if xl else "Stable Diffusion") + (" (v-prediction)" if pred == "v_prediction" else "")
    if fused:
        summary += ": " + " + ".join([base] + [f"{f['name']}×{f['scale']:g}" for f in fused])
    return {"kind": "diffusion", "format": "stable-diffusion", "summary": summary, "details": d, "check": check}


def _write_configs(diffusers, pipe, out_dir):
    """Tokenizer(s), scheduler and per-part configs, model_index.json; returns the scheduler config."""
    xl = _is_xl(pipe)
    _tokenizer(pipe.tokenizer, out_dir)
    if xl:
        _tokenizer(pipe.tokenizer_2, out_dir, "tokenizer_2")
    sched = _jsonable(pipe.scheduler.config)
    sched["_class_name"] = type(pipe.scheduler).__name__
    _write_json(os.path.join(out_dir, "scheduler", "scheduler_config.json"), sched)
    ucfg = _jsonable(pipe.unet.config)
    ucfg["_class_name"] = "UNet2DConditionModel"
    _write_json(os.path.join(out_dir, "unet", "config.json"), ucfg)
    vcfg = _jsonable(pipe.vae.config)
    vcfg["_class_name"] = "AutoencoderKL"
    for sub in ("vae_decoder", "vae_encoder"):
        _write_json(os.path.join(out_dir, sub, "config.json"), vcfg)
    _write_json(os.path.join(out_dir, "text_encoder", "config.json"), pipe.text_encoder.config.to_dict())
    if xl:
        _write_json(os.path.join(out_dir, "text_encoder_2", "config.json"), pipe.text_encoder_2.config.to_dict())
        _write_json(os.path.join(out_dir, "model_index.json"), {
            "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": diffusers.__version__,
            "force_zeros_for_empty_prompt": bool(pipe.config.get("force_zeros_for_empty_prompt", True)),
            "scheduler": ["diffusers", sched["_class_name"]], "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        })
        return sched
    _write_json(os.path.join(out_dir, "model_index.json"), {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
        "requires_safety_checker": False, "safety_checker": [None, None], "feature_extractor": [None, None],
        "scheduler": ["diffusers", sched["_class_name"]], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
    return sched


def convert_folder(args, loras):
    pipe = load_pipeline(args.input)
    return convert_pipeline(args.input, pipe, args.out, args.check, loras=loras)
