"""Drives reelbox's ComfyUI API the way Open WebUI and ComfyUI's own script examples do.

Usage: comfy_client.py BASE_URL OUT_DIR

Open WebUI: reads the checkpoints from /object_info, fills its default workflow (string
node ids) through its node mapping, listens on /ws?clientId= until `executing` with
`node: null` for its prompt, then reads /history/{id} and fetches each picture from /view.
ComfyUI's websockets_api_example.py: the same with a prompt_id of its own in the POST.
Writes the pictures into OUT_DIR and prints a JSON summary; tests/it/comfy_compat.rs checks it.
"""

import json
import random
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import websocket

# Open WebUI's COMFYUI_DEFAULT_WORKFLOW, as it ships.
WORKFLOW = """{
  "3": {"inputs": {"seed": 0, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
        "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]},
        "class_type": "KSampler", "_meta": {"title": "KSampler"}},
  "4": {"inputs": {"ckpt_name": "model.safetensors"}, "class_type": "CheckpointLoaderSimple",
        "_meta": {"title": "Load Checkpoint"}},
  "5": {"inputs": {"width": 512, "height": 512, "batch_size": 1}, "class_type": "EmptyLatentImage",
        "_meta": {"title": "Empty Latent Image"}},
  "6": {"inputs": {"text": "Prompt", "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
        "_meta": {"title": "CLIP Text Encode (Prompt)"}},
  "7": {"inputs": {"text": "", "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
        "_meta": {"title": "CLIP Text Encode (Prompt)"}},
  "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode", "_meta": {"title": "VAE Decode"}},
  "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage",
        "_meta": {"title": "Save Image"}}
}"""

# Open WebUI's default node mapping: (type, node ids, input key).
NODES = [("prompt", ["6"], "text"), ("model", ["4"], "ckpt_name"), ("width", ["5"], "width"),
         ("height", ["5"], "height"), ("n", ["5"], "batch_size"), ("steps", ["3"], "steps"), ("seed", ["3"], "seed")]


def get_json(base, path):
    with urllib.request.urlopen(f"{base}{path}") as r:
        return json.loads(r.read())


def run(base, workflow, own_prompt_id):
    """Queues a workflow and waits on the socket; returns (prompt id, message types, binary frames)."""
    client_id = str(uuid.uuid4())
    ws = websocket.WebSocket()
    ws.connect(f"{base.replace('http', 'ws', 1)}/ws?clientId={client_id}")
    body = {"prompt": workflow, "client_id": client_id}
    if own_prompt_id:
        body["prompt_id"] = str(uuid.uuid4())
    req = urllib.request.Request(f"{base}/prompt", data=json.dumps(body).encode("utf-8"))
    prompt_id = json.loads(urllib.request.urlopen(req).read())["prompt_id"]
    kept = prompt_id == body.get("prompt_id", prompt_id)
    types, binary = set(), 0
    while True:
        out = ws.recv()
        if isinstance(out, str):
            message = json.loads(out)
            types.add(message["type"])
            if message["type"] == "executing":
                data = message["data"]
                if data["node"] is None and data["prompt_id"] == prompt_id:
                    break
        else:
            binary += 1
    ws.close()
    return prompt_id, kept, types, binary


def main():
    base, out_dir = sys.argv[1].rstrip("/"), Path(sys.argv[2])
    info = get_json(base, "/object_info")
    models = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    values = {"prompt": "a lighthouse at dusk", "model": models[0], "width": 64, "height": 64, "n": 2, "steps": 12,
              "seed": random.randint(0, 1125899906842624)}
    workflow = json.loads(WORKFLOW)
    for kind, node_ids, key in NODES:
        for node_id in node_ids:
            workflow[node_id]["inputs"][key] = values[kind]
    summary = {"models": models, "runs": []}
    for own_prompt_id in (False, True):
        prompt_id, kept, types, binary = run(base, workflow, own_prompt_id)
        history = get_json(base, f"/history/{prompt_id}")[prompt_id]
        sizes = []
        for node_id, node_output in history["outputs"].items():
            for image in node_output.get("images", []):
                query = urllib.parse.urlencode(
                    {"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]})
                with urllib.request.urlopen(f"{base}/view?{query}") as r:
                    data = r.read()
                    content_type = r.headers.get("content-type")
                (out_dir / image["filename"]).write_bytes(data)
                sizes.append([node_id, content_type, image["filename"]])
        summary["runs"].append({"own_prompt_id_kept": kept, "types": sorted(types), "previews": binary,
                                "status": history["status"]["status_str"], "images": sizes})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
