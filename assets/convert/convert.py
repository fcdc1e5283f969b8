"""reelbox's model converter: turns a checkpoint people already have into the ONNX layout
reelbox runs, and writes the inputs and PyTorch outputs its self-check compares against.

reelbox writes this file (embedded in its binary) into a scratch directory and runs it
with the managed environment's Python. Protocol on stdout, one line each:
  PROGRESS <step> <total> <message>   a step of the conversion
  RESULT <json>                       the last line on success
  ERROR <message>                     the last line on a refusal (exit status 2)
Reference tensors are raw little-endian float32 files in --check, shapes in RESULT.
"""
import argparse
import errno
import json
import os
import sys
import tempfile
import threading
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if __name__ == "__main__":
    # sd.py imports helpers from "convert": let that be this module, not a second copy
    # (a Refused raised there must be the Refused caught here).
    sys.modules["convert"] = sys.modules["__main__"]

OPSET = 17


class Refused(Exception):
    """A refusal with a message for the user (names the file)."""


def progress(step, total, message):
    print(f"PROGRESS {step} {total} {message}", flush=True)


def expect_kind(path, wanted, kind, fmt):
    """Refuses a checkpoint of another kind than --kind said as soon as its kind is known,
    before the export (minutes for a real Stable Diffusion), in the words reelbox uses for a
    result of another kind."""
    if wanted and wanted != kind:
        a = "an" if kind[0] in "aeiou" else "a"
        raise Refused(f"{path}: is {a} {kind} model ({fmt}), not {wanted}")


def setup_torch():
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    torch.manual_seed(0)
    for cat in (DeprecationWarning, UserWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=cat)
    try:
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    except AttributeError:
        pass
    return torch


def save_tensor(check_dir, name, t):
    """Writes a reference tensor; returns its entry for RESULT."""
    import numpy as np

    arr = np.ascontiguousarray(t.detach().cpu().float().numpy(), dtype="<f4")
    arr.tofile(os.path.join(check_dir, name + ".f32"))
    return {"file": name + ".f32", "shape": list(arr.shape)}


def load_state_dict(path):
    """A checkpoint's tensors, or a refusal naming the file."""
    torch = setup_torch()
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            # weights_only: a checkpoint is data, never code to run. (ParameterDict: how the
            # original textual_inversion repo saved an embedding's vectors; a container of tensors.)
            with torch.serialization.safe_globals([torch.nn.ParameterDict]):
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unreadable
        if "pickl" in type(e).__name__.lower():
            # torch's own text suggests weights_only=False, i.e. running the file's code: never.
            raise Refused(f"{path}: not a readable checkpoint (corrupt, or a pickle that holds code, not only tensors)")
        if zipfile_without_pickle(path):
            raise Refused(f"{path}: a zip archive, but not a PyTorch checkpoint (no data.pkl in it)")
        raise Refused(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    if not isinstance(sd, dict) or not sd:
        raise Refused(f"{path}: not a checkpoint of named tensors")
    return sd


def zipfile_without_pickle(path):
    """True for a zip (a `.ckpt` that is really an archive of something else): torch.save
    writes zips whose one folder holds `data.pkl`."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return not any(n.endswith("/data.pkl") or n == "data.pkl" for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def exit_with_parent(parent):
    """Ends this process when reelbox (pid `parent`) ends (kill -9, OOM): else it would go
    on converting into the staging directory the job's next attempt converts into again."""

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def export(torch, model, args, path, input_names, output_names, dynamic_axes):
    with torch.no_grad():
        torch.onnx.export(
            model, args, path, input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )


def halve_weights(out_dir):
    """--fp16: every float32 weight of every exported graph stored as float16 and cast back
    where it is used. The files shrink by half; ONNX Runtime folds the casts when it loads
    the model, so it computes in float32 as before, from weights rounded to float16."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    for root, _, files in os.walk(out_dir):
        if "model.onnx" not in files:
            continue
        path = os.path.join(root, "model.onnx")
        external = os.path.isfile(os.path.join(root, "model.onnx_data"))
        m = onnx.load(path)  # with its external weights
        casts = []
        for init in m.graph.initializer:
            if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= 16:
                name = init.name
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), name + "_fp16"))
                casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT,
                                              name=name + "_to_fp32"))
        nodes = casts + list(m.graph.node)
        del m.graph.node[:]
        m.graph.node.extend(nodes)
        if external:
            os.remove(os.path.join(root, "model.onnx_data"))
        onnx.save_model(m, path, save_as_external_data=external, all_tensors_to_one_file=True,
                        location="model.onnx_data", size_threshold=1024)


def convert_upscaler(path, sd, out_dir, check_dir, kind=None):
    torch = setup_torch()
    import spandrel

    try:
        desc = spandrel.ModelLoader(device="cpu").load_from_state_dict(sd)
    except spandrel.UnsupportedModelError:
        raise Refused(
            f"{path}: unknown model format (not an upscaler spandrel knows, nor Wav2Lip, "
            "Stable Diffusion, a LoRA or a textual-inversion embedding)"
        )
    except Exception as e:  # noqa: BLE001
        raise Refused(f"{path}: looks like an upscaler but its weights do not load ({e})")
    if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.input_channels != 3 or desc.output_channels != 3:
        raise Refused(f"{path}: {desc.architecture.name} is not an RGB image-to-image model")
    if desc.scale < 1:
        raise Refused(f"{path}: {desc.architecture.name} has scale {desc.scale}")
    expect_kind(path, kind, "upscale", desc.architecture.name)
    progress(1, 3, f"loaded {desc.architecture.name} x{desc.scale}")
    model = desc.model.eval().float()
    req = desc.size_requirements
    side = max(32, req.minimum)
    if req.multiple_of > 1:
        side = -(-side // req.multiple_of) * req.multiple_of
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(1, 3, side, side, generator=g)
    onnx_path = os.path.join(out_dir, "model.onnx")
    export(torch, model, (x,), onnx_path, ["input"], ["output"],
           {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "out_height", 3: "out_width"}})
    progress(2, 3, "exported ONNX with dynamic height and width")
    with torch.no_grad():
        y = model(x)
    check = {"input": save_tensor(check_dir, "input", x), "expected": save_tensor(check_dir, "expected", y)}
    progress(3, 3, "computed the PyTorch reference tile")
    return {
        "kind": "upscale",
        "format": desc.architecture.name,
        "summary": f"{desc.architecture.name} x{desc.scale} upscaler",
        "details": {"architecture": desc.architecture.name, "scale": desc.scale},
        "check": check,
    }


def convert_wav2lip(path, sd, out_dir, check_dir):
    torch = setup_torch()
    from wav2lip_arch import Wav2Lip, clean_state_dict

    model = Wav2Lip()
    try:
        model.load_state_dict(clean_state_dict(sd), strict=True)
    except Exception as e:  # noqa: BLE001
        raise Refused(f"{path}: Wav2Lip weights do not fit the Wav2Lip generator ({str(e).splitlines()[0][:200]})")
    model.eval()
    progress(1, 3, "loaded the Wav2Lip generator")
    g = torch.Generator().manual_seed(1234)
    batch = 4
    mel = (torch.rand(batch, 1, 80, 16, generator=g) * 8 - 4)
    faces = torch.rand(batch, 6, 96, 96, generator=g)
    faces[:, :3, 48:, :] = 0  # the masked copy, as the pipeline feeds it
    onnx_path = os.path.join(out_dir, "model.onnx")
    export(torch, model, (mel, faces), onnx_path, ["mel_spectrogram", "video_frames"], ["predicted_frames"],
           {"mel_spectrogram": {0: "batch"}, "video_frames": {0: "batch"}, "predicted_frames": {0: "batch"}})
    progress(2, 3, "exported ONNX with a dynamic batch")
    with torch.no_grad():
        y = model(mel, faces)
    check = {
        "mel": save_tensor(check_dir, "mel", mel),
        "faces": save_tensor(check_dir, "faces", faces),
        "expected": save_tensor(check_dir, "expected", y),
    }
    progress(3, 3, f"computed the PyTorch reference for a batch of {batch} frames")
    return {"kind": "lipsync", "format": "wav2lip", "summary": "Wav2Lip generator", "details": {}, "check": check}


def looks_like_vae(keys):
    """A standalone VAE, as `models/vae/*.safetensors` (A1111, ComfyUI) hold one: only an
    autoencoder's `encoder.`, `decoder.`, `quant_conv.` and `post_quant_conv.` weights (LDM or
    diffusers names, maybe under `first_stage_model.`)."""
    parts = {k.removeprefix("first_stage_model.").split(".")[0] for k in keys if isinstance(k, str)}
    # (`loss.` is what a training checkpoint of one keeps beside them)
    return {"decoder", "post_quant_conv"} <= parts <= {"encoder", "decoder", "quant_conv", "post_quant_conv", "loss"}


def convert_file(args, loras):
    import embedding
    from wav2lip_arch import looks_like_wav2lip

    path = args.input
    sd = load_state_dict(path)
    inner = sd.get("state_dict")
    if isinstance(inner, dict) and any(isinstance(k, str) and k.startswith("model.diffusion_model.") for k in inner):
        sd = inner  # an LDM training checkpoint: {"state_dict": ..., "global_step": ...}
    keys = list(sd.keys())
    if any(isinstance(k, str) and k.startswith("model.diffusion_model.") for k in keys):
        expect_kind(path, args.kind, "diffusion", "stable-diffusion")
        import sd as sd_export
        import sd_single

        pipe, details = sd_single.load(path, sd, args)
        del sd
        return sd_export.convert_pipeline(path, pipe, args.out, args.check, details=details, loras=loras)
    if looks_like_vae(keys) or (isinstance(inner, dict) and looks_like_vae(inner.keys())):
        raise Refused(f"{path}: a standalone VAE (only an autoencoder's weights): not supported; a Stable Diffusion "
                      "checkpoint carries its own VAE, so import the checkpoint")
    if loras:
        raise Refused(f"{path}: --lora applies to Stable Diffusion base models only")
    if args.prediction:
        raise Refused(f"{path}: --prediction applies to Stable Diffusion checkpoints only")
    if looks_like_wav2lip(keys) or (isinstance(sd.get("state_dict"), dict) and looks_like_wav2lip(sd["state_dict"].keys())):
        expect_kind(path, args.kind, "lipsync", "wav2lip")
        return convert_wav2lip(path, sd, args.out, args.check)
    if embedding.looks_like_embedding(sd):
        if args.fp16:
            raise Refused(f"{path}: --fp16 applies to models converted to ONNX; an embedding is a few vectors, "
                          "kept as float32")
        return embedding.convert(path, sd, args.out, args.check, args.kind)
    if any(".lora_down." in k or ".lora_A." in k or k.startswith("lora_") for k in keys if isinstance(k, str)):
        raise Refused(f"{path}: is a LoRA; import its base model with --lora {os.path.basename(path)}")
    if isinstance(sd.get("params_ema"), dict) or isinstance(sd.get("params"), dict):
        sd = sd.get("params_ema") or sd["params"]
    if not all(hasattr(v, "shape") for v in sd.values()):
        raise Refused(f"{path}: unknown model format (no tensors at the top level)")
    return convert_upscaler(path, sd, args.out, args.check, args.kind)


def parse_lora(text):
    """`FILE:SCALE` as reelbox passes it (it checked both already)."""
    file, _, scale = text.rpartition(":")
    try:
        return file, float(scale)
    except ValueError:
        raise Refused(f"--lora {text}: the scale is not a number")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True, help="the model directory to fill")
    ap.add_argument("--check", required=True, help="where reference tensors go")
    ap.add_argument("--lora", action="append", default=[], help="FILE:SCALE")
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--prediction", choices=["epsilon", "v_prediction"], help="a single file's prediction type")
    ap.add_argument("--kind",
                    help="the kind reelbox was told (diffusion, lipsync, upscale, embedding): another is refused")
    ap.add_argument("--models", help="the models dir (installed tokenizers a single file may use)")
    ap.add_argument("--parent", type=int, help="reelbox's pid: the converter ends when it does")
    args = ap.parse_args()
    exit_with_parent(args.parent or os.getppid())
    try:
        if not os.path.exists(args.input):
            raise Refused(f"{args.input}: no such file or directory")
        loras = [parse_lora(x) for x in args.lora]
        if os.path.isdir(args.input):
            if not os.path.isfile(os.path.join(args.input, "model_index.json")):
                raise Refused(f"{args.input}: a directory that is neither a diffusers folder nor an ONNX layout")
            expect_kind(args.input, args.kind, "diffusion", "stable-diffusion")
            import sd

            result = sd.convert_folder(args, loras)
        else:
            result = convert_file(args, loras)
        if args.fp16:
            halve_weights(args.out)
            result["details"]["fp16"] = "weights stored as float16, computed in float32"
            progress(0, 0, "stored the weights as float16")
    except Refused as e:
        print(f"ERROR {e}", flush=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - one line for the user, the traceback for the log
        traceback.print_exc()
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            models = os.path.dirname(os.path.dirname(os.path.abspath(args.out)))
            print(f"ERROR {args.input}: the disk filled up while converting (no space left on device); "
                  f"free space in {models} and {tempfile.gettempdir()}, then import again", flush=True)
        else:
            print(f"ERROR {args.input}: the conversion failed ({type(e).__name__}: "
                  f"{(str(e).splitlines() or [''])[0][:200]})", flush=True)
        sys.exit(2)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
