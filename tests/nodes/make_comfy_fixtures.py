"""Writes the tiny ComfyUI-side test models: a random CLIP-L text encoder and a random TAESD VAE.

Run with the ComfyUI harness's Python (it imports ComfyUI's own model classes so the files have
exactly the keys and shapes ComfyUI's CLIPLoader and VAELoader expect):

    python make_comfy_fixtures.py COMFY_DIR OUT_DIR

Writes OUT_DIR/input/dance.mp4 (8 frames, 64 x 64, 8 fps: a moving gradient),
OUT_DIR/text_encoders/tiny_clip_l.safetensors (the real CLIP-L shape, the smallest text encoder
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
    write_video(os.path.join(out_dir, "input", "dance.mp4"))
    for sub, name, sd in (
        ("text_encoders", "tiny_clip_l.safetensors", clip_sd),
        ("vae", "tiny_taesd.safetensors", vae_sd),
    ):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
        save_file(sd, os.path.join(out_dir, sub, name))


def write_video(path: str, frames: int = 8, size: int = 64, fps: int = 8) -> None:
    """A small H.264 video with PyAV (ComfyUI's own video dependency)."""
    import av
    import numpy as np

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        ramp = np.linspace(0, 255, size, dtype=np.float32)
        for f in range(frames):
            rgb = np.stack(
                [
                    np.add.outer(ramp, ramp) / 2,
                    np.roll(ramp, 8 * f)[None].repeat(size, 0),
                    np.full((size, size), 128.0),
                ],
                -1,
            ).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def video_info(path: str) -> None:
    """Prints frames, width and height of a video file as JSON."""
    import json

    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        print(json.dumps({"frames": frames, "width": stream.width, "height": stream.height}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--video-info":
        video_info(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) != 3:
        sys.exit("usage: make_comfy_fixtures.py COMFY_DIR OUT_DIR")
    main(sys.argv[1], sys.argv[2])
