"""Python piper-tts timings for `reelbox bench tts` (the reference side of the comparison).

Run with a Python that has piper-tts installed:

    python piper_reference.py --model VOICE.onnx --threads N --runs R --text-file PARAGRAPH.txt

Loads the voice the way `PiperVoice.load` does (CPU provider, default session options) but
with `intra_op_num_threads = N`, so both sides use the same ONNX Runtime thread count.
One untimed warm-up sentence precedes the timed runs (reelbox does the same).
Prints one JSON object:
  load_s            import of piper + session creation
  runs: [{wall_s, first_sentence_s, samples}]   one per synthesis of the whole text
  sample_rate
"""
import argparse
import json
import time

T0 = time.perf_counter()

import onnxruntime  # noqa: E402
from piper import PiperVoice  # noqa: E402
from piper.config import PiperConfig  # noqa: E402


def load(model, threads):
    with open(f"{model}.json", "r", encoding="utf-8") as f:
        config = json.load(f)
    opts = onnxruntime.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=PiperConfig.from_dict(config))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--text-file", required=True)
    a = p.parse_args()
    with open(a.text_file, "r", encoding="utf-8") as f:
        text = f.read().strip()
    voice = load(a.model, a.threads)
    load_s = time.perf_counter() - T0
    # Warm-up, as the reelbox side does: first-run allocations stay out of the figures.
    for _ in voice.synthesize("This is a test."):
        pass
    runs = []
    for _ in range(a.runs):
        start = time.perf_counter()
        first = None
        samples = 0
        for chunk in voice.synthesize(text):
            _ = chunk.audio_int16_bytes  # what writing a WAV costs
            if first is None:
                first = time.perf_counter() - start
            samples += len(chunk.audio_float_array)
        runs.append({"wall_s": time.perf_counter() - start, "first_sentence_s": first, "samples": samples})
    print(json.dumps({"load_s": load_s, "runs": runs, "sample_rate": voice.config.sample_rate,
                      "onnxruntime": onnxruntime.__version__}))


if __name__ == "__main__":
    main()
