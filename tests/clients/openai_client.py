"""Talks to reelbox's OpenAI-compatible API with the official OpenAI Python client.

Usage: openai_client.py BASE_URL OUT_DIR IMAGE_MODEL

Writes image.png, image.jpeg, speech.wav, speech.mp3 and speech-sse.wav into OUT_DIR and
prints a JSON summary of what the client saw; the Rust test (tests/it/openai_compat.rs)
checks the files with ffprobe. Exits non-zero with the client's exception when a call fails.
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
    # OpenAI's names, which the routes take, are models too (they were 404s).
    summary["retrieved"] = [client.models.retrieve(m).id for m in ("gpt-image-1", "dall-e-3", "tts-1", image_model)]

    images = client.images.generate(
        model=image_model, prompt="a lighthouse at dusk", size="96x64", n=1, response_format="b64_json"
    )
    png = base64.b64decode(images.data[0].b64_json)
    (out_dir / "image.png").write_bytes(png)
    summary["image_size"] = list(png_size(png))
    summary["image_count"] = len(images.data)
    # Asked for no quality, the answer says the one used, in a name the SDK's type lists.
    summary["default_quality"] = images.quality

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

    # A GPT image model name with its own parameters: base64 by default, JPEG on request,
    # the fields clients read (usage, output_format, size) present.
    gpt = client.images.generate(
        model="chatgpt-image-latest", prompt="a lighthouse", size="64x64", quality="xhigh", output_format="jpeg",
        output_compression=80, background="auto", moderation="low", user="u", safety_identifier="s",
    )
    (out_dir / "image.jpeg").write_bytes(base64.b64decode(gpt.data[0].b64_json))
    summary["gpt"] = {"output_format": gpt.output_format, "size": gpt.size, "quality": gpt.quality,
                      "background": gpt.background, "total_tokens": gpt.usage.total_tokens}

    # stream=True: OpenAI's image events (it was read as an empty stream).
    events = client.images.generate(
        model="gpt-image-1", prompt="a lighthouse", size="64x64", n=2, stream=True, partial_images=1,
        extra_body={"steps": 12},
    )
    summary["image_events"] = [e.type for e in events]

    # stream_format="sse": the audio in base64 deltas, then done (it was refused).
    audio = b""
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="marin", input="Hello from reelbox.", response_format="wav",
        stream_format="sse", instructions="Speak calmly", speed=1.25,
    ) as resp:
        types = []
        for line in resp.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                types.append(event["type"])
                audio += base64.b64decode(event.get("audio", ""))
    (out_dir / "speech-sse.wav").write_bytes(audio)
    summary["speech_events"] = sorted(set(types))

    # images.edit redraws the picture after the prompt (image-to-image), at its own size
    # (with a mask only a part of it: openai_inpaint.py), and variations say what to use instead.
    edited = client.images.edit(model="gpt-image-1", image=("in.png", png, "image/png"), prompt="a red lighthouse")
    edited_png = base64.b64decode(edited.data[0].b64_json)
    summary["edit"] = {"size": list(png_size(edited_png)), "reported": edited.size}
    try:
        client.images.create_variation(image=("in.png", png, "image/png"))
        summary["variation"] = "accepted"
    except openai.NotFoundError as e:
        summary["variation"] = {"status": e.status_code, "mentions_edit": "images.edit" in e.message}
    no_v1 = openai.OpenAI(base_url=base_url, api_key="reelbox-local", max_retries=0, timeout=30)
    try:
        no_v1.models.list()
        summary["no_v1"] = "accepted"
    except openai.NotFoundError as e:
        summary["no_v1"] = {"status": e.status_code, "says_v1": f"{base_url}/v1".split("//")[1] in e.message}

    print(json.dumps(summary))


if __name__ == "__main__":
    main()
