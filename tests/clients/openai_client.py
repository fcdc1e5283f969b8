"""Talks to reelbox's OpenAI-compatible API with the official OpenAI Python client.

Usage: openai_client.py BASE_URL OUT_DIR IMAGE_MODEL

Writes image.png, speech.wav and speech.mp3 into OUT_DIR and prints a JSON summary; the
Rust test (tests/it/openai_compat.rs) checks the files with ffprobe. Exits non-zero with the
client's exception when a call fails.
"""

import base64
import json
import struct
import sys
from pathlib import Path

import openai


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise SystemExit("the image is not a PNG")
    return struct.unpack(">II", data[16:24])


def main() -> None:
    base_url, out_dir, image_model = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="reelbox-local", max_retries=0, timeout=300)
    summary = {"models": sorted(m.id for m in client.models.list())}

    images = client.images.generate(
        model=image_model, prompt="a lighthouse at dusk", size="96x64", n=1, response_format="b64_json"
    )
    png = base64.b64decode(images.data[0].b64_json)
    (out_dir / "image.png").write_bytes(png)
    summary["image_size"] = list(png_size(png))
    summary["image_count"] = len(images.data)

    for fmt in ("wav", "mp3"):
        speech = client.audio.speech.create(
            model="tts-1", voice="alloy", input="Hello from reelbox. This is a test.", response_format=fmt
        )
        path = out_dir / f"speech.{fmt}"
        path.write_bytes(speech.content)
        summary[f"speech_{fmt}_bytes"] = len(speech.content)

    try:
        client.images.generate(model=image_model, prompt="x", size="100x3")
        summary["bad_size"] = "accepted"
    except openai.BadRequestError as e:
        summary["bad_size"] = {"status": e.status_code, "param": e.param, "type": e.type}

    print(json.dumps(summary))


if __name__ == "__main__":
    main()
