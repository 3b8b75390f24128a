"""Writes the tiny ComfyUI-side test models: a random CLIP-L text encoder and a random TAESD VAE.

Run with the ComfyUI harness's Python (it imports ComfyUI's own model classes so the files have
exactly the keys and shapes ComfyUI's CLIPLoader and VAELoader expect):

    python make_comfy_fixtures.py COMFY_DIR OUT_DIR

Writes OUT_DIR/text_encoders/tiny_clip_l.safetensors (the real CLIP-L shape, the smallest text encoder
ComfyUI's CLIPLoader accepts: 123 M parameters in fp16, random) and OUT_DIR/vae/tiny_taesd.safetensors.
The AMG UNet of the tests is built with a 768-wide text context to match.
"""

import math
import os
import sys


def main(comfy_dir: str, out_dir: str) -> None:
    sys.path.insert(0, comfy_dir)
    sys.argv = sys.argv[:1] + ["--cpu"]  # ComfyUI reads its device from the command line
    import comfy.options

    comfy.options.enable_args_parsing()
    import json

    import comfy.clip_model
    import comfy.ops
    import comfy.taesd.taesd
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)

    def randomise(shapes: dict, dtype) -> dict:
        out = {}
        for key, shape in shapes.items():
            if key.endswith("weight") and len(shape) >= 2:
                t = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
            elif key.endswith("weight") and "norm" in key:
                t = torch.ones(shape)
            else:
                t = 0.02 * torch.randn(shape, generator=gen)
            out[key] = t.to(dtype).contiguous()
        return out

    with open(os.path.join(comfy_dir, "comfy", "sd1_clip_config.json")) as f:
        clip_config = json.load(f)
    with torch.device("meta"):
        clip = comfy.clip_model.CLIPTextModel(
            clip_config, torch.float32, "meta", comfy.ops.disable_weight_init
        )
        taesd = comfy.taesd.taesd.TAESD()
    clip_sd = randomise({k: v.shape for k, v in clip.state_dict().items()}, torch.float16)
    vae_sd = randomise(
        {k: v.shape for k, v in taesd.state_dict().items() if k.startswith("taesd_")}, torch.float32
    )
    vae_sd["vae_scale"] = torch.tensor(1.0)
    vae_sd["vae_shift"] = torch.tensor(0.0)
    for sub, name, sd in (
        ("text_encoders", "tiny_clip_l.safetensors", clip_sd),
        ("vae", "tiny_taesd.safetensors", vae_sd),
    ):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
        save_file(sd, os.path.join(out_dir, sub, name))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: make_comfy_fixtures.py COMFY_DIR OUT_DIR")
    main(sys.argv[1], sys.argv[2])
