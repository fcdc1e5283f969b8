"""Asks reelbox's OpenAI-compatible API for a picture with the official OpenAI Python client
set to give up after 2 s and try again, as the SDK does after its (10-minute) timeout.

Usage: openai_retry.py BASE_URL IMAGE_MODEL

Prints a JSON summary: the job that answered (x-reelbox-job) and how many times the client
tried again. The Rust test (tests/it/openai_rejoin.rs) holds the queue until the first try
has given up, then checks that every try waited on one job.
"""

import base64
import json
import sys

import openai


def main() -> None:
    base_url, image_model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="reelbox-local", max_retries=6, timeout=2)
    raw = client.images.with_raw_response.generate(
        model=image_model, prompt="a lighthouse at dusk", size="64x64", n=1, response_format="b64_json"
    )
    images = raw.parse()
    summary = {
        "job": raw.headers.get("x-reelbox-job"),
        "retries": raw.retries_taken,
        "png": base64.b64decode(images.data[0].b64_json)[:4] == b"\x89PNG",
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
