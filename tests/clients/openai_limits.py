"""Keys and rate limits as the official OpenAI Python client meets them.

Usage: openai_limits.py BASE_URL KEY

The daemon is expected to allow a burst of 2 requests. Prints a JSON summary of what the
client raised and how long its own retry waited; tests/it/openai_compat.rs checks it.
"""

import json
import sys
import time

import openai


def main() -> None:
    base_url, key = sys.argv[1], sys.argv[2]
    summary = {}
    wrong = openai.OpenAI(base_url=f"{base_url}/v1", api_key="rb_wrong", max_retries=0)
    try:
        wrong.models.list()
        summary["wrong_key"] = "accepted"
    except openai.AuthenticationError as e:
        summary["wrong_key"] = {"status": e.status_code, "type": e.type}

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)
    refused = None
    for _ in range(4):
        try:
            client.models.list()
        except openai.RateLimitError as e:
            refused = e
            break
    if refused is None:
        summary["rate_limited"] = "never"
    else:
        retry_after = int(refused.response.headers["retry-after"])
        summary["rate_limited"] = {"status": refused.status_code, "code": refused.code, "retry_after": retry_after}
        # The SDK's own retry waits Retry-After; rounded up, one wait is enough.
        patient = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=1)
        t0 = time.monotonic()
        patient.models.list()
        summary["retried_after_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
