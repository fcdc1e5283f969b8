"""Inpaints through reelbox's OpenAI-compatible API with the official OpenAI Python client.

Usage: openai_inpaint.py BASE_URL IN_DIR OUT_DIR IMAGE_MODEL

IN_DIR holds picture.png, mask.png (transparent where to redraw), small-mask.png (another
size) and mask.jpeg. Writes the edited picture to OUT_DIR/edited.png and prints a JSON
summary of what the client saw; tests/it/inpaint.rs checks the pixels.
"""

import base64
import json
import sys
from pathlib import Path

import openai


def main() -> None:
    base_url, in_dir, out_dir, image_model = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="reelbox-local", max_retries=0, timeout=300)
    picture = (in_dir / "picture.png").read_bytes()
    summary = {}
    edited = client.images.edit(
        model=image_model,
        image=("picture.png", picture, "image/png"),
        mask=("mask.png", (in_dir / "mask.png").read_bytes(), "image/png"),
        prompt="a red lighthouse",
        response_format="b64_json",
    )
    (out_dir / "edited.png").write_bytes(base64.b64decode(edited.data[0].b64_json))
    summary["size"] = edited.size
    for name, kind in (("small-mask.png", "image/png"), ("mask.jpeg", "image/jpeg")):
        try:
            client.images.edit(
                image=("picture.png", picture, "image/png"), mask=(name, (in_dir / name).read_bytes(), kind), prompt="x"
            )
            summary[name] = "accepted"
        except openai.BadRequestError as e:
            summary[name] = {"status": e.status_code, "param": e.param, "type": e.type}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
