"""SDXL base single files (Stability's sgm key layout: `model.diffusion_model.` with
`label_emb`, `first_stage_model.`, `conditioner.embedders.0.transformer.` = CLIP ViT-L,
`conditioner.embedders.1.model.` = OpenCLIP ViT-bigG) -> a diffusers
StableDiffusionXLPipeline, offline, then the SDXL export and self-check of `sd.py`.

diffusers' own reading of an sgm config fits only full-size SDXL (it hard-codes the 256-wide
time embedding for 2048/1280-wide contexts), so every size is read from the weights instead
and handed to `from_single_file` as a diffusers config folder: UNet levels, widths, blocks,
attention depths, context width, linear projections and the added-conditioning widths; the
VAE's levels and widths; both text encoders (`sd_single.clip_config`). The original config
(`X.yaml` beside the file, else the shipped `sd_xl_base.yaml`) gives what weights do not: the
latent scale factor, the attention head width, the noise schedule and the prediction type.
Tokenizers: `tokenizer/` and `tokenizer_2/` as for SD 1.x (`sd_single.find_tokenizer`), the
second padding with "!" as OpenCLIP does.
"""
import os
import re
import shutil
import tempfile

from convert import Refused, progress, setup_torch
from sd_single import (HERE, XL_CLIP, XL_OPENCLIP, _layers, _yaml_params, clip_config, find_tokenizer, load_error,
                       safetensors_source, with_special_ids, write_json)

UNET, VAE = "model.diffusion_model.", "first_stage_model."


def original_config(path):
    beside = os.path.splitext(path)[0] + ".yaml"
    if os.path.isfile(beside):
        return beside, "beside the checkpoint"
    return os.path.join(HERE, "sd_xl_base.yaml"), "shipped sd_xl_base.yaml"


def _first(sd, prefix, suffix):
    return next(k for k in sd if k.startswith(prefix) and k.endswith(suffix))


def unet_config(path, sd, head_channels, pooled):
    """UNet2DConditionModel's config from the sgm UNet's weights."""
    p = UNET
    try:
        blocks = {int(m.group(1)) for k in sd if (m := re.match(re.escape(p) + r"input_blocks\.(\d+)\.", k))}
        downs = [i for i in blocks if p + f"input_blocks.{i}.0.op.weight" in sd]
        levels = len(downs) + 1
        n = (max(blocks) - len(downs)) // levels  # blocks: conv_in, then n resnets (+ a downsampler) per level
        widths, depths = [], []
        for i in range(levels):
            b = (n + 1) * i + 1
            widths.append(int(sd[p + f"input_blocks.{b}.0.out_layers.3.weight"].shape[0]))
            depths.append(_layers([k for k in sd if k.startswith(p + f"input_blocks.{b}.1.")],
                                  r"transformer_blocks\.(\d+)\."))
        context = int(sd[_first(sd, p, "attn2.to_k.weight")].shape[1])
        linear = sd[_first(sd, p, "proj_in.weight")].dim() == 2
        adm = int(sd[p + "label_emb.0.0.weight"].shape[1])
        conv_in, conv_out = sd[p + "input_blocks.0.0.weight"], sd[p + "out.2.weight"]
    except (StopIteration, KeyError, ValueError) as e:
        raise Refused(f"{path}: the SDXL UNet's weights are incomplete ({type(e).__name__}: {e})")
    time_dim, rest = divmod(adm - pooled, 6)
    if rest or time_dim <= 0:
        raise Refused(f"{path}: the UNet's added conditioning ({adm} wide) does not fit the pooled text embedding "
                      f"({pooled} wide) and six size ids")
    return {
        "_class_name": "UNet2DConditionModel", "sample_size": 128, "in_channels": int(conv_in.shape[1]),
        "out_channels": int(conv_out.shape[0]), "block_out_channels": widths, "layers_per_block": n,
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "up_block_types": ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)],
        # diffusers' "attention_head_dim" is the number of heads per level
        "attention_head_dim": [max(1, w // head_channels) for w in widths],
        "transformer_layers_per_block": [max(1, d) for d in depths], "cross_attention_dim": context,
        "use_linear_projection": linear, "addition_embed_type": "text_time", "addition_time_embed_dim": time_dim,
        "projection_class_embeddings_input_dim": adm,
    }


def vae_config(path, sd, scale):
    """AutoencoderKL's config from the sgm VAE's weights."""
    p = VAE
    try:
        levels = _layers([k for k in sd if k.startswith(p + "encoder.down.")], r"encoder\.down\.(\d+)\.")
        widths = [int(sd[p + f"encoder.down.{i}.block.0.conv2.weight"].shape[0]) for i in range(levels)]
        n = _layers([k for k in sd if k.startswith(p + "encoder.down.0.block.")], r"block\.(\d+)\.")
        cfg = {"_class_name": "AutoencoderKL", "in_channels": int(sd[p + "encoder.conv_in.weight"].shape[1]),
               "out_channels": int(sd[p + "decoder.conv_out.weight"].shape[0]),
               "latent_channels": int(sd[p + "encoder.conv_out.weight"].shape[0]) // 2}
    except KeyError as e:
        raise Refused(f"{path}: the SDXL VAE's weights are incomplete ({e})")
    return {**cfg, "down_block_types": ["DownEncoderBlock2D"] * levels, "up_block_types": ["UpDecoderBlock2D"] * levels,
            "block_out_channels": widths, "layers_per_block": n, "sample_size": 1024, "scaling_factor": scale,
            "force_upcast": True}


def load(path, sd, args):
    """A StableDiffusionXLPipeline from the single file; returns it and the facts to record."""
    torch = setup_torch()
    import diffusers
    from transformers import CLIPTextConfig

    yaml_path, yaml_from = original_config(path)
    params = _yaml_params(yaml_path)
    try:
        net = params["network_config"]["params"]
        head_channels = int(net.get("num_head_channels", 64))
        scaling = params.get("denoiser_config", {}).get("params", {}).get("scaling_config", {}).get("target", "")
        ddpm = params.get("denoiser_config", {}).get("params", {}).get("discretization_config", {}).get("params", {})
        scale = float(params.get("scale_factor", 0.13025))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise Refused(f"{yaml_path}: not an SDXL (sgm) config ({type(e).__name__}: {e})")
    te = clip_config(path, sd, XL_CLIP)
    te2 = clip_config(path, sd, XL_OPENCLIP, openclip=True)
    work = tempfile.mkdtemp(prefix="reelbox-sdxl-")
    try:
        cfg = os.path.join(work, "config")
        found = []
        for sub, part, pad in (("tokenizer", te, "<|endoftext|>"), ("tokenizer_2", te2, "!")):
            tok_dir, vocab, origin = find_tokenizer(path, part["vocab_size"], args.models, work, sub=sub, pad=pad)
            shutil.copytree(tok_dir, os.path.join(cfg, sub))
            found.append((vocab, origin))
        CLIPTextConfig(**with_special_ids(te, found[0][0])).save_pretrained(os.path.join(cfg, "text_encoder"))
        te2_cfg = CLIPTextConfig(**with_special_ids(te2, found[1][0], pad_id=1))
        te2_cfg.architectures = ["CLIPTextModelWithProjection"]
        te2_cfg.save_pretrained(os.path.join(cfg, "text_encoder_2"))
        write_json(os.path.join(cfg, "unet", "config.json"), unet_config(path, sd, head_channels, te2["projection_dim"]))
        write_json(os.path.join(cfg, "vae", "config.json"), vae_config(path, sd, scale))
        # What SDXL base ships on the hub: Euler on SD's training schedule, leading spacing.
        write_json(os.path.join(cfg, "scheduler", "scheduler_config.json"), {
            "_class_name": "EulerDiscreteScheduler", "beta_start": ddpm.get("linear_start", 0.00085),
            "beta_end": ddpm.get("linear_end", 0.012), "beta_schedule": "scaled_linear",
            "num_train_timesteps": int(params.get("denoiser_config", {}).get("params", {}).get("num_idx", 1000)),
            "steps_offset": 1, "timestep_spacing": "leading", "interpolation_type": "linear",
            "prediction_type": "epsilon", "use_karras_sigmas": False})
        write_json(os.path.join(cfg, "model_index.json"), {
            "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": diffusers.__version__,
            "force_zeros_for_empty_prompt": True, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
        src = safetensors_source(path, sd, work)
        try:
            pipe = diffusers.StableDiffusionXLPipeline.from_single_file(
                src, config=cfg, local_files_only=True, torch_dtype=torch.float32, add_watermarker=False)
        except Exception as e:  # noqa: BLE001 - any failure means the file does not fit its config
            raise load_error(path, "SDXL", yaml_path, yaml_from, e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.prediction:
        pred, how = args.prediction, "--prediction"
    elif scaling.endswith("VScaling"):
        pred, how = "v_prediction", "VScaling in " + os.path.basename(yaml_path)
    else:
        pred, how = "epsilon", "the scaling in " + os.path.basename(yaml_path)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=pred)
    tokenizers = "; ".join(f"{sub}: {origin}" for sub, (_, origin) in zip(("tokenizer", "tokenizer_2"), found))
    progress(0, 0, f"Stable Diffusion XL checkpoint; config: {yaml_from}; {tokenizers}; prediction: {pred} ({how})")
    return pipe, {"source_format": "single-file", "version": "xl", "original_config": yaml_from,
                  "prediction_from": how, "tokenizer": found[0][1], "tokenizer_2": found[1][1]}
