"""Stable Diffusion 1.x/2.x single-file checkpoints (original LDM key layout, `.safetensors`
or `.ckpt`, as A1111/ComfyUI users have them; SDXL ones go on to `sd_xl_single`) -> a
diffusers pipeline, offline, then the same export and self-check as a diffusers folder
(`sd.convert_pipeline`).

What the single file does not hold is found without the hub:
- the original config: `X.yaml` beside `X.safetensors` (A1111's convention), else the
  shipped `v1-inference.yaml` / `v2-inference.yaml`, chosen by the text encoder's keys
  (`cond_stage_model.transformer.` = CLIP ViT-L, SD 1.x; `cond_stage_model.model.` =
  OpenCLIP, SD 2.x; `conditioner.embedders.` = SDXL, handed to `sd_xl_single.py`, refiners
  refused);
- the prediction type: `--prediction` when given, else `parameterization: "v"` in the
  config beside it, else for SD 2.x A1111's guess (the UNet on a flat 0.5 input at t=999:
  a mean of output - input below -1 means v-prediction), else epsilon;
- the text encoder's config: from its weights' shapes (every SD text encoder has 64-wide heads);
- the CLIP tokenizer: a `tokenizer/` folder beside the checkpoint, else one of an installed
  diffusion model (same vocabulary size), else for CLIP's own 49408 tokens OpenAI CLIP's,
  built from the pinned `open_clip_torch` wheel's vocabulary (`clip_vocab.py`), else a
  refusal saying so.
"""
import json
import os
import re
import shutil
import tempfile

import clip_vocab
from convert import Refused, progress, setup_torch

HERE = os.path.dirname(os.path.abspath(__file__))
V1, V2 = "cond_stage_model.transformer.", "cond_stage_model.model."
XL_CLIP, XL_OPENCLIP = "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."


def family(path, keys):
    """'v1', 'v2' or 'xl' from the text encoders' keys; SDXL refiners and others are refused."""
    if any(k.startswith("conditioner.embedders.") for k in keys):
        if not any(k.startswith(XL_CLIP) for k in keys):
            raise Refused(f"{path}: an SDXL refiner (only the OpenCLIP-G text encoder, no CLIP one); "
                          "only SDXL base models are converted")
        return "xl"
    if any(k.startswith(V2) for k in keys):
        return "v2"
    if any(k.startswith(V1) for k in keys):
        return "v1"
    raise Refused(f"{path}: a Stable Diffusion UNet without a known text encoder (neither SD 1.x nor 2.x)")


def _layers(keys, pattern):
    found = [int(m.group(1)) for k in keys if (m := re.search(pattern, k))]
    return max(found) + 1 if found else 0


def clip_config(path, sd, prefix, openclip=False, penultimate=False):
    """CLIPTextConfig fields from the weights' shapes under `prefix`: transformers' CLIP
    layout (SD 1.x, SDXL's first encoder) or OpenCLIP's (`openclip`: SD 2.x, SDXL's second;
    SD 2.x conditions on the `penultimate` layer, so diffusers' encoder stops there)."""
    keys = [k for k in sd if k.startswith(prefix)]
    try:
        if not openclip:
            tok = next(k for k in keys if k.endswith("embeddings.token_embedding.weight"))
            pos = next(k for k in keys if k.endswith("embeddings.position_embedding.weight"))
            fc1 = next(k for k in keys if k.endswith("layers.0.mlp.fc1.weight"))
            layers = _layers(keys, r"encoder\.layers\.(\d+)\.")
            act, proj = "quick_gelu", sd[tok].shape[1]
        else:
            tok, pos = prefix + "token_embedding.weight", prefix + "positional_embedding"
            fc1 = prefix + "transformer.resblocks.0.mlp.c_fc.weight"
            layers = _layers(keys, r"resblocks\.(\d+)\.") - (1 if penultimate else 0)
            act = "gelu"
            proj = sd[prefix + "text_projection"].shape[1] if prefix + "text_projection" in sd else sd[tok].shape[1]
        hidden = sd[tok].shape[1]
        return {"vocab_size": sd[tok].shape[0], "hidden_size": hidden, "intermediate_size": sd[fc1].shape[0],
                "num_hidden_layers": layers, "num_attention_heads": max(1, hidden // 64),
                "max_position_embeddings": sd[pos].shape[0], "hidden_act": act, "projection_dim": proj}
    except (StopIteration, KeyError) as e:
        raise Refused(f"{path}: the text encoder's weights are incomplete ({e})")


def with_special_ids(cfg, vocab, pad_id=None):
    """The config with the tokenizer's start/end ids (and pad: end unless given)."""
    cfg["bos_token_id"] = vocab.get("<|startoftext|>", 0)
    cfg["eos_token_id"] = vocab.get("<|endoftext|>", 2)
    cfg["pad_token_id"] = cfg["eos_token_id"] if pad_id is None else pad_id
    return cfg


def text_encoder_config(path, sd, fam, vocab):
    """SD 1.x/2.x's text encoder config from its weights."""
    if fam == "v1":
        return with_special_ids(clip_config(path, sd, V1), vocab)
    return with_special_ids(clip_config(path, sd, V2, openclip=True, penultimate=True), vocab, pad_id=1)


def _vocab(dir_):
    try:
        with open(os.path.join(dir_, "vocab.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _pad(dir_):
    """The folder's pad token, as transformers (and reelbox) read it."""
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        try:
            with open(os.path.join(dir_, name), encoding="utf-8") as f:
                tok = json.load(f).get("pad_token")
        except (OSError, ValueError, AttributeError):
            continue
        tok = tok.get("content") if isinstance(tok, dict) else tok
        if isinstance(tok, str):
            return tok
    return "<|endoftext|>"


def find_tokenizer(path, vocab_size, models_dir, work, sub="tokenizer", pad="<|endoftext|>"):
    """The CLIP tokenizer folder for a text encoder with `vocab_size` tokens: `sub/` beside the
    checkpoint, else an installed model's `sub/` with that vocabulary size, else (for CLIP's
    own 49408 tokens) OpenAI CLIP's, written into `work` from the pinned package. An installed
    model's counts only with the same `pad` (SD 1.x's pads with its end token, SD 2.x's and
    SDXL's second with "!": the text encoder sees the padding). Returns the folder, its
    vocabulary and where it came from."""
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), sub)
    candidates = [(beside, "beside the checkpoint")]
    if models_dir and os.path.isdir(models_dir):
        candidates += [(os.path.join(models_dir, d, sub), f"installed model {d}") for d in sorted(os.listdir(models_dir))]
    for c, origin in candidates:
        v = _vocab(c)
        if v is None or len(v) != vocab_size or not os.path.isfile(os.path.join(c, "merges.txt")):
            continue
        if c == beside or _pad(c) == pad:
            return c, v, origin
    if vocab_size == clip_vocab.VOCAB_SIZE:
        dst = os.path.join(work, "clip-" + sub)
        vocab = clip_vocab.write(dst, pad=pad)
        if vocab is not None:
            ids = clip_vocab.probe_ids(dst)
            if ids != clip_vocab.PROBE[1]:
                raise Refused(f"{clip_vocab.bpe_file()}: not OpenAI CLIP's vocabulary "
                              f"({clip_vocab.PROBE[0]!r} gives {ids}, not {clip_vocab.PROBE[1]})")
            return dst, vocab, f"OpenAI CLIP's from {clip_vocab.PACKAGE} {clip_vocab.version()}"
    raise Refused(
        f"{path}: needs the CLIP tokenizer for its {vocab_size}-token vocabulary and has none: put its {sub}/ "
        "folder (vocab.json, merges.txt) beside the checkpoint, or install a Stable Diffusion model with that "
        f"vocabulary first (OpenAI CLIP's own {clip_vocab.VOCAB_SIZE}-token one comes with the converter)")


def original_config(path, fam):
    beside = os.path.splitext(path)[0] + ".yaml"
    if os.path.isfile(beside):
        return beside, "beside the checkpoint"
    return os.path.join(HERE, f"{fam}-inference.yaml"), f"shipped {fam}-inference.yaml"


def _yaml_params(yaml_path):
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.load(yaml_path))["model"]["params"]
    except Exception as e:  # noqa: BLE001 - any failure means the config is unusable
        raise Refused(f"{yaml_path}: not an original Stable Diffusion config ({type(e).__name__}: {e})")


def guess_v_prediction(torch, unet):
    """A1111's test: v-prediction models map a flat 0.5 input at t=999 far below it."""
    x = torch.ones((1, unet.config.in_channels, 8, 8)) * 0.5
    cond = torch.ones((1, 2, unet.config.cross_attention_dim)) * 0.5
    with torch.no_grad():
        out = unet(x, torch.tensor(999.0), cond, return_dict=False)[0]
    return (out - x).mean().item() < -1


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def safetensors_source(path, sd, work):
    """The file diffusers reads: `path` itself, or for a pickle the tensors already read
    with weights_only=True (diffusers would torch.load it again)."""
    if path.lower().endswith(".safetensors"):
        return path
    from safetensors.torch import save_file

    src = os.path.join(work, "checkpoint.safetensors")
    save_file({k: v.contiguous() for k, v in sd.items() if hasattr(v, "contiguous")}, src)
    return src


def diffusers_words(e):
    """What diffusers said when a file does not fit its config, the part that says what does
    not fit, in one line: a weight's size in the file and in the config (without the advice to
    load random weights in its place, which is never what an import wants), else the first
    sentence of its message."""
    text = re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", " ".join(str(e).split()))
    m = re.match(r"Cannot load .*?because (\S+) expected shape (\S+(?: \S+)*?), but got (.+?)\. ", text + " ")
    if m:
        return f"its {m[1]} is {m[3]} in the file, {m[2]} in the config"
    m = re.match(r"Cannot load (\S+) because it has shape (.+?) in the checkpoint but shape (.+?) in ", text)
    if m:
        return f"its {m[1]} is {m[2]} in the file, {m[3]} in the config"
    if isinstance(e, KeyError):
        return f"the config needs a weight the file does not have ({text})"
    first = re.split(r"(?<=[.!?]) ", text, maxsplit=1)[0]
    if len(first) > 400:
        # a list of weights: the first of them say what it is about
        first = first[:400].rsplit(", ", 1)[0] + ", …"
    return f"{type(e).__name__}: {first}"


def load_error(path, label, yaml_path, yaml_from, e):
    """A loading failure as a refusal naming the file, the config it was read with and what
    does not fit. Without its own config beside it, the shipped one was a guess: its original
    `X.yaml` (A1111's convention) is what fits it."""
    if isinstance(e, Refused):
        return e
    why = diffusers_words(e)
    if yaml_from.startswith("shipped"):
        beside = os.path.basename(os.path.splitext(path)[0] + ".yaml")
        return Refused(f"{path}: does not fit the shipped {label} config ({os.path.basename(yaml_path)}): {why}; put "
                       f"the model's original config beside it as {beside} (A1111's convention)")
    return Refused(f"{path}: does not load as {label} with its config {yaml_path} ({why})")


def load(path, sd, args):
    """A diffusers pipeline from the single file; returns it and the facts to record."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch = setup_torch()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    fam = family(path, sd)
    if fam == "xl":
        import sd_xl_single

        return sd_xl_single.load(path, sd, args)
    yaml_path, yaml_from = original_config(path, fam)
    params = _yaml_params(yaml_path)
    vocab_key = next((k for k in sd if k.endswith("token_embedding.weight") and k.startswith((V1, V2))), None)
    if vocab_key is None:
        raise Refused(f"{path}: the text encoder has no token embedding")
    work = tempfile.mkdtemp(prefix="reelbox-sd-")
    try:
        tok_dir, vocab, tok_from = find_tokenizer(path, sd[vocab_key].shape[0], args.models, work,
                                                  # SD 2.x's OpenCLIP tokenizer pads with "!"
                                                  pad="!" if fam == "v2" else "<|endoftext|>")
        cfg = os.path.join(work, "config")
        os.makedirs(os.path.join(cfg, "text_encoder"))
        shutil.copytree(tok_dir, os.path.join(cfg, "tokenizer"))
        from transformers import CLIPTextConfig

        CLIPTextConfig(**text_encoder_config(path, sd, fam, vocab)).save_pretrained(os.path.join(cfg, "text_encoder"))
        write_json(os.path.join(cfg, "scheduler", "scheduler_config.json"), {
            "_class_name": "PNDMScheduler", "beta_start": params.get("linear_start", 0.00085),
            "beta_end": params.get("linear_end", 0.012), "beta_schedule": "scaled_linear",
            "num_train_timesteps": params.get("timesteps", 1000), "steps_offset": 1, "skip_prk_steps": True,
            "set_alpha_to_one": False, "prediction_type": "epsilon",
            # what SD 1.x/2.x pipelines on the hub say (PNDM's default would be linspace here)
            "timestep_spacing": "leading"})
        write_json(os.path.join(cfg, "model_index.json"), {
            "_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
            "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [None, None],
            "feature_extractor": [None, None], "requires_safety_checker": False})
        src = safetensors_source(path, sd, work)
        try:
            pipe = diffusers.StableDiffusionPipeline.from_single_file(
                src, original_config=yaml_path, config=cfg, local_files_only=True, torch_dtype=torch.float32,
                safety_checker=None, requires_safety_checker=False)
        except Exception as e:  # noqa: BLE001 - any failure means the file does not fit its config
            raise load_error(path, f"SD {fam[1]}.x", yaml_path, yaml_from, e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.prediction:
        pred, how = args.prediction, "--prediction"
    elif params.get("parameterization") == "v":
        pred, how = "v_prediction", "parameterization in " + os.path.basename(yaml_path)
    elif fam == "v2" and guess_v_prediction(torch, pipe.unet):
        pred, how = "v_prediction", "guessed from the UNet (A1111's test)"
    else:
        pred, how = "epsilon", "the default for SD " + fam[1] + ".x" + (" (A1111's test)" if fam == "v2" else "")
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=pred)
    progress(0, 0, f"Stable Diffusion {fam[1]}.x checkpoint; config: {yaml_from}; tokenizer: {tok_from}; "
                   f"prediction: {pred} ({how})")
    return pipe, {"source_format": "single-file", "version": fam, "original_config": yaml_from,
                  "prediction_from": how, "tokenizer": tok_from}
