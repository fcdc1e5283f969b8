"""What the official OpenAI Python client raises for requests reelbox refuses.

Usage: openai_refusals.py BASE_URL

Prints a JSON summary of the exceptions (class, status, type, param, code, message);
tests/it/openai_compat.rs checks it.
"""

import json
import sys

import openai


def raised(call) -> dict:
    """The exception `call` raised, as the client shows it."""
    try:
        call()
    except openai.APIStatusError as e:
        return {"class": type(e).__name__, "status": e.status_code, "type": e.type, "param": e.param,
                "code": e.code, "message": e.message}
    return {"class": None}


def main() -> None:
    base_url = sys.argv[1]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="reelbox-local", max_retries=0, timeout=60)
    summary = {
        "speech_model": raised(lambda: client.audio.speech.create(model="nope", voice="alloy", input="hi")),
        "wrong_method": raised(lambda: client.get("/images/generations", cast_to=object)),
        "chat": raised(lambda: client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}])),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
