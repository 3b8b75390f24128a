"""Peak GPU memory and time of the whole standalone pipeline for a long clip, with and without offloading.

Real-size models with random weights (no download): the AMG UNet (``unet_bench.build_unet``), the
SD 2.1 VAE (KL-f8, 83 M parameters) and the OpenCLIP ViT-H/14 text tower (354 M parameters), float32
VAE and text encoder, the UNet prepared by ``prepare_unet`` (fp16 + CUDA graphs). One job: a 64-frame
256x256 avatar video through ``pipeline.generate_video`` (prompt encoding, VAE encoding, 20 DDIM steps
with guidance in 16-frame windows, VAE decoding). Variants: everything resident on the GPU, and
``MemoryOptions.low_vram()`` (the 8 GiB-card setting). Prints the peak allocated memory (what the
job needs from a card) and the wall time of the second run.

    python bench/memory_bench.py [--frames 64] [--steps 20]
    python bench/memory_bench.py --device cpu --tiny --frames 8 --steps 1   # smoke test of this script
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from unet_bench import build_unet  # noqa: E402

from amg_model import pipeline  # noqa: E402
from amg_model.model.runtime import prepare_unet  # noqa: E402
from amg_model.model.text import TextEncoder, _text_tower  # noqa: E402
from amg_model.model.vae import VAEConfig, VideoVAE  # noqa: E402
from amg_model.pipeline import MemoryOptions, generate_video  # noqa: E402

GIB = 2**30


STAGES = ("encode_prompt", "encode_frames", "sample_latents", "decode_latents")


def record_stage_peaks(peaks: dict) -> None:
    """Wrap the pipeline's stage functions: ``peaks[stage]`` = peak GiB allocated during that stage."""
    for name in STAGES:
        real = getattr(pipeline, name)

        def staged(*args, _real=real, _name=name, **kwargs):
            torch.cuda.reset_peak_memory_stats()
            try:
                return _real(*args, **kwargs)
            finally:
                peak = torch.cuda.max_memory_allocated() / GIB
                peaks[_name] = max(peaks.get(_name, 0.0), peak)

        setattr(pipeline, name, staged)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny UNet, for a smoke test of this script")
    args = ap.parse_args()
    torch.set_num_threads(4)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = VideoVAE(VAEConfig(), AutoencoderKL(**VAEConfig().diffusers_kwargs())).eval().requires_grad_(False)
    text = TextEncoder(_text_tower(1024, 24, 49408, 4.0)).eval().requires_grad_(False)
    frames = torch.rand(args.frames, 256, 256, 3)
    print(f"{'variant':40s} {'peak GiB':>9s} {'s (2nd run)':>12s}")
    stage_peaks: dict = {}
    if cuda:
        record_stage_peaks(stage_peaks)
    for name, memory in (("all on the GPU", None), ("MemoryOptions.low_vram()", MemoryOptions.low_vram())):
        unet = prepare_unet(build_unet(tiny=args.tiny), dev)
        if memory is None:
            vae.to(dev)
            text.to(dev)
        else:
            vae.cpu()
            text.cpu()
        if cuda:
            torch.cuda.empty_cache()
        run_time = 0.0
        for _ in range(2):
            stage_peaks.clear()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            out = generate_video(
                unet, vae, text, frames, "a person", steps=args.steps, device=dev, memory=memory
            )
            if cuda:
                torch.cuda.synchronize()
            run_time = time.perf_counter() - t0
        # the stage wrappers reset the peak: the run's peak is the largest stage peak
        peak = max([torch.cuda.max_memory_allocated() / GIB, *stage_peaks.values()]) if cuda else float("nan")
        print(f"{name:40s} {peak:9.2f} {run_time:12.2f}   output {tuple(out.shape)}", flush=True)
        if stage_peaks:
            print("    peak GiB by stage: " + ", ".join(f"{k} {v:.2f}" for k, v in stage_peaks.items()))
        del unet
        if cuda:
            torch.cuda.empty_cache()
    card = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"card: {card}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
