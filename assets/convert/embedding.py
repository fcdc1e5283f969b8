"""Textual-inversion embeddings (A1111's "EasyNegative" and the like) -> embedding.safetensors:
the vectors reelbox puts in a prompt where the embedding's name stands (the text encoders take
them as embedding_vectors). Nothing is exported; the file is read as A1111
(`textual_inversion.py` create_embedding_from_data) and ComfyUI (`sd1_clip.py` load_embed) read it:
- A1111's .pt: {"string_to_param": {"*": [n, d]}, "name", "step", ...} (the first term);
- A1111's .safetensors: {"emb_params": [n, d]};
- SDXL: {"clip_l": [n, 768], "clip_g": [n, 1280]}, a vector for each text encoder;
- diffusers' learned_embeds.bin/.safetensors: {"<token>": [d] or [n, d]}.
Written float32 and 2-D: `emb_params` [n, d], or `clip_l` and `clip_g` for SDXL.
"""
import os

from convert import Refused, expect_kind, progress, save_tensor, setup_torch

# A prompt chunk holds 75 tokens (77 with BOS and EOS): an embedding must fit in one.
MAX_VECTORS = 75
XL_KEYS = ("clip_l", "clip_g")


def looks_like_embedding(sd):
    """One of the forms above, or loose tensors under plain names (no module path, as every
    network's weights have): those are refused here, in an embedding's words."""
    if _recognised(sd):
        return True
    return all(isinstance(k, str) and "." not in k and hasattr(v, "shape") for k, v in sd.items())


def _recognised(sd):
    """One of the forms above (its values are checked later)."""
    if any(k in sd for k in ("string_to_param", "emb_params") + XL_KEYS):
        return True
    return len(sd) == 1 and all(hasattr(v, "shape") for v in sd.values())


def _unrelated(path, tensors):
    names = ", ".join(str(k) for k in list(tensors)[:4]) + (", ..." if len(tensors) > 4 else "")
    return Refused(f"{path}: {len(tensors)} unrelated tensors ({names}): neither a model reelbox knows nor a "
                   "textual-inversion embedding (which holds one set of vectors)")


def _vectors(torch, path, v, what):
    """`v` as float32 [n, d], or a refusal that says what is wrong with it."""
    if not isinstance(v, torch.Tensor):
        raise Refused(f"{path}: {what} is not a tensor ({type(v).__name__}), not a textual-inversion embedding")
    if not v.is_floating_point():
        raise Refused(f"{path}: {what} holds {v.dtype} numbers, not an embedding's floating-point vectors")
    v = v.detach().float()
    if v.dim() == 1:
        v = v.unsqueeze(0)  # diffusers' one-vector form
    if v.dim() != 2:
        raise Refused(f"{path}: {what} is a {v.dim()}-D tensor {list(v.shape)}, not a list of embedding vectors")
    n, d = v.shape
    if n == 0 or d == 0:
        raise Refused(f"{path}: {what} holds no vectors (shape {list(v.shape)})")
    if n > MAX_VECTORS:
        raise Refused(f"{path}: {what} holds {n} vectors; a prompt chunk holds at most {MAX_VECTORS} tokens")
    if not bool(torch.isfinite(v).all()):
        raise Refused(f"{path}: {what} holds values that are not finite (NaN or infinity): a broken embedding")
    return v.contiguous()


def read(path, sd):
    """The embedding's tensors as they are written ({"emb_params"} or {"clip_l", "clip_g"}),
    and its training step when the file says it."""
    torch = setup_torch()
    step = sd.get("step") if isinstance(sd.get("step"), int) and not isinstance(sd.get("step"), bool) else None
    if "string_to_param" in sd:
        params = sd["string_to_param"]
        # the original textual_inversion repo saved an nn.ParameterDict (A1111 reads _parameters too)
        params = getattr(params, "_parameters", params)
        if not isinstance(params, dict) or not params:
            raise Refused(f"{path}: its string_to_param holds no vectors, not a textual-inversion embedding")
        key = next(iter(params))
        return {"emb_params": _vectors(torch, path, params[key], f"string_to_param[{key!r}]")}, step
    if any(k in sd for k in XL_KEYS):
        missing = [k for k in XL_KEYS if k not in sd]
        if missing:
            raise Refused(f"{path}: an SDXL embedding needs both clip_l and clip_g vectors; it has no {missing[0]}")
        out = {k: _vectors(torch, path, sd[k], k) for k in XL_KEYS}
        if out["clip_l"].shape[0] != out["clip_g"].shape[0]:
            raise Refused(f"{path}: an SDXL embedding with {out['clip_l'].shape[0]} clip_l vectors but "
                          f"{out['clip_g'].shape[0]} clip_g ones (each token needs both)")
        return out, step
    tensors = {k: v for k, v in sd.items() if hasattr(v, "shape")}
    if "emb_params" in tensors:
        return {"emb_params": _vectors(torch, path, tensors["emb_params"], "emb_params")}, step
    if len(tensors) != 1:
        raise _unrelated(path, tensors)
    key, v = next(iter(tensors.items()))
    return {"emb_params": _vectors(torch, path, v, f"{key!r}")}, step


def convert(path, sd, out_dir, check_dir, kind=None):
    """Writes out_dir/embedding.safetensors; returns the RESULT, whose self-check reference
    is the vectors as PyTorch read them (reelbox reads the written file back against it)."""
    from safetensors.torch import save_file

    if not _recognised(sd):
        raise _unrelated(path, sd)  # before the kind: it is no embedding either
    expect_kind(path, kind, "embedding", "textual-inversion")
    tensors, step = read(path, sd)
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "embedding.safetensors"))
    widths = [int(t.shape[1]) for t in tensors.values()]
    n = int(next(iter(tensors.values())).shape[0])
    count = f"{n} vector{'s' if n != 1 else ''}"
    summary = f"textual inversion embedding, {count} " + (
        f"for SDXL ({widths[0]} + {widths[1]})" if len(widths) == 2 else f"of {widths[0]}")
    progress(1, 1, f"read {count} ({' + '.join(map(str, widths))} wide)")
    details = {"vectors": n, "widths": widths}
    if step is not None:
        details["step"] = step
    torch = setup_torch()
    order = [k for k in ("emb_params", "clip_l", "clip_g") if k in tensors]
    expected = torch.cat([tensors[k].flatten() for k in order])
    check = {"expected": save_tensor(check_dir, "expected", expected)}
    return {"kind": "embedding", "format": "textual-inversion", "summary": summary, "details": details, "check": check}
