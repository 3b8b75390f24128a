"""A clip's time beyond its UNet calls: one sampled clip against 20 step graphs and 20 UNet graphs.

Builds the default CUDA UNet (fp16, channels-last, fused projections, CUDA graphs) of real size with
random weights, and times (median of ``--clips``, after a warm-up clip):
  * one 16-frame 256x256 clip through ``sample_video`` (20 DDIM steps, guidance 3);
  * 20 replays back to back of the graphed sampling step (``sampling.step.guided_ddim_step``), the
    clip's work without its set-up;
  * 20 replays back to back of the UNet's own graph (one guided call).

    python bench/clip_overhead_bench.py [--clips 5]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from unet_bench import build_unet, sample_clip  # noqa: E402

from amg_model.model.fast import FastUNet  # noqa: E402
from amg_model.sampling.schedule import ddim_alpha_pairs, ddim_timesteps  # noqa: E402
from amg_model.sampling.step import ddim_coefficient_table, guided_ddim_step  # noqa: E402

STEPS = 20


def median_seconds(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(4)
    dev = torch.device("cuda")
    model = FastUNet(
        build_unet().half().to(dev), mode="cuda_graph", channels_last=True, fused_projections=True
    )
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 4, 16, 32, 32, generator=g)
    avatar = (torch.randn(1, 4, 16, 32, 32, generator=g) * 0.8).to(dev)
    cond, uncond = (torch.randn(1, 77, 1024, generator=g).to(dev) for _ in range(2))
    clip = functools.partial(sample_clip, model, avatar, cond, uncond, noise, STEPS)
    clip()  # capture and warm-up

    step = model.graphed(guided_ddim_step)
    timesteps = ddim_timesteps(STEPS)
    table = ddim_coefficient_table(ddim_alpha_pairs(timesteps), dev, torch.float32)
    t_table = torch.tensor(timesteps, device=dev)
    x, cond16, uncond16 = noise.to(dev), cond.half(), uncond.half()

    def steps() -> None:
        for i in range(STEPS):
            step(
                x,
                avatar,
                t_table[i : i + 1],
                cond16,
                uncond16,
                table[i],
                guidance=3.0,
                model_dtype=torch.float16,
            )

    x_unet = torch.cat([torch.cat([x, avatar], 1)] * 2).half()
    t2, ctx = torch.full((2,), 501, device=dev), torch.cat([uncond16, cond16])

    def unet_calls() -> None:
        for _ in range(STEPS):
            model(x_unet, t2, ctx, input_copies=2)

    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, median of {args.clips}")
    for name, fn in (
        ("clip (sample_video)", clip),
        ("20 step graphs", steps),
        ("20 UNet graphs", unet_calls),
    ):
        fn()
        print(f"  {name}: {median_seconds(fn, args.clips):.4f} s")


if __name__ == "__main__":
    main()
