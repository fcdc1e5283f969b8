"""OpenAI CLIP's tokenizer (the one every Stable Diffusion text encoder was trained with),
written as a transformers `CLIPTokenizer` folder from the BPE vocabulary the pinned
`open_clip_torch` wheel ships (`open_clip/bpe_simple_vocab_16e6.txt.gz`). The package is
never imported (it would pull timm and torch models in for a data file): its directory is
found with `importlib.util.find_spec`.

The layout is exactly OpenAI CLIP's `SimpleTokenizer`: the 256 byte characters, the same
with `</w>`, the 48894 merges joined, then `<|startoftext|>` (49406) and `<|endoftext|>`
(49407): 49408 entries, 77 tokens long. SD 1.x pads with `<|endoftext|>`; SDXL's second
tokenizer (OpenCLIP's) pads with `!`.
"""
import gzip
import importlib.util
import json
import os

VOCAB_SIZE = 49408
MERGES = 49152 - 256 - 2  # what CLIP's SimpleTokenizer keeps of the file's lines
PACKAGE = "open_clip_torch"
# What OpenAI CLIP makes of the self-check's prompt: the vocabulary is proved with it.
PROBE = ("a photo of a cat", [49406, 320, 1125, 539, 320, 2368, 49407])


def _bytes_to_unicode():
    """CLIP's printable stand-in for each byte, in its order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def bpe_file():
    """The packaged vocabulary's path, or None when the package is not installed."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        path = os.path.join(d, "bpe_simple_vocab_16e6.txt.gz")
        if os.path.isfile(path):
            return path
    return None


def write(dst, pad="<|endoftext|>"):
    """Writes the CLIP tokenizer folder into `dst`; returns its vocabulary, or None when the
    package's file is missing."""
    src = bpe_file()
    if src is None:
        return None
    with gzip.open(src, "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1:MERGES + 1]
    chars = _bytes_to_unicode()
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(merges) != MERGES or len(vocab) != VOCAB_SIZE:
        raise ValueError(f"{src}: {len(merges)} merges, {len(vocab)} tokens; CLIP has {MERGES} and {VOCAB_SIZE}")
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(dst, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": pad}
    with open(os.path.join(dst, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)
    with open(os.path.join(dst, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({**special, "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
                   "errors": "replace", "add_prefix_space": False, "clean_up_tokenization_spaces": True}, f, indent=2)
    return vocab


def version():
    """The installed package's version, for the record."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v(PACKAGE)
    except PackageNotFoundError:
        return "?"


def probe_ids(dst):
    """The ids transformers' CLIPTokenizer gives the probe prompt with the folder at `dst`."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(dst)(PROBE[0])["input_ids"]


if __name__ == "__main__":
    # A check by hand: python clip_vocab.py DIR writes the folder and prints the probe's ids.
    import sys

    write(sys.argv[1])
    ids = probe_ids(sys.argv[1])
    print(ids, "ok" if ids == PROBE[1] else f"expected {PROBE[1]}")
