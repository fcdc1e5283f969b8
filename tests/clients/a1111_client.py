"""Draws through reelbox's A1111-compatible API with `webuiapi`, the Python client scripts and
bots use for AUTOMATIC1111's web UI.

Usage: a1111_client.py BASE_URL KEY MODEL PICTURE

Logs in as A1111's `--api-auth` does (Basic credentials, the key as the password), picks
MODEL by its title as `util_set_model` does (through /sdapi/v1/options), draws with txt2img,
then redraws the left half of PICTURE (a 64² PNG) with img2img and a white-left mask. Prints
a JSON summary of what the client saw; tests/it/a1111.rs checks it.
"""

import contextlib
import json
import sys
from urllib.parse import urlparse

import webuiapi
from PIL import Image


def main() -> None:
    base_url, key, model, picture_path = sys.argv[1:5]
    url = urlparse(base_url)
    api = webuiapi.WebUIApi(host=url.hostname, port=url.port, sampler="Euler a", steps=3)
    api.set_auth("open-webui", key)
    summary = {"models": api.util_get_model_names()}
    # util_set_model says what it does on stdout; the summary is the only thing printed there.
    with contextlib.redirect_stdout(sys.stderr):
        api.util_set_model(model)
    summary["checkpoint"] = api.get_options()["sd_model_checkpoint"]
    drawn = api.txt2img(prompt="a red door", seed=42, width=96, height=64, cfg_scale=7, batch_size=2)
    summary["txt2img"] = {
        "sizes": [list(image.size) for image in drawn.images],
        "seeds": drawn.info["all_seeds"],
        "model": drawn.info["sd_model_name"],
        "infotexts_match": [image.info.get("parameters") for image in drawn.images] == drawn.info["infotexts"],
    }
    picture = Image.open(picture_path).convert("RGB")
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (0, 0, picture.width // 2, picture.height))
    redrawn = api.img2img(
        images=[picture], mask_image=mask, prompt="a red door", seed=3, steps=4, denoising_strength=0.9,
        width=picture.width, height=picture.height, inpainting_fill=1,
    ).image.convert("RGB")
    right = (picture.width // 2, 0, picture.width, picture.height)
    left = (0, 0, picture.width // 2 - 6, picture.height)
    summary["img2img"] = {
        "size": list(redrawn.size),
        "kept_right_half": list(redrawn.crop(right).getdata()) == list(picture.crop(right).getdata()),
        "redrew_left_half": list(redrawn.crop(left).getdata()) != list(picture.crop(left).getdata()),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
