"""Seconds per clip and peak memory of AMG sampling through the library path (prepare_unet + sample_video).

Real-size AMG UNet with random weights (bench/unet_bench.py's build_unet), 256x256 (latent 32x32),
20 DDIM steps with guidance 3.0. Variants: 16 frames in auto mode (fp16 + CUDA graphs) and fp32
eager as the reference; 64 frames with one window per UNet call or all of them, overlapping or
shifted windows (one window per call is what ``MemoryOptions.low_vram()`` uses); optionally compiled.
Prints one table; appends it to bench/RESULTS.md only with --write.

    python bench/sample_bench.py                 # CUDA, real size
    python bench/sample_bench.py --compile       # adds the compiled variant (minutes of compilation)
    python bench/sample_bench.py --tiny --device cpu --steps 2   # smoke test of this script
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from unet_bench import build_unet  # noqa: E402

from amg_model.model.runtime import prepare_unet  # noqa: E402
from amg_model.sampling.sample import sample_video  # noqa: E402

GIB = 2**30


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def run_variant(name, unet_fp32_state, tiny, dev, frames, steps, clips, prep, sample_kw):
    """Build a fresh UNet, prepare it, time ``clips`` clips after one warm-up; returns a result row."""
    unet = build_unet(tiny=tiny)
    unet.load_state_dict(unet_fp32_state)
    fn = prepare_unet(unet, dev, **prep)
    g = torch.Generator().manual_seed(0)
    dim = unet.config.cross_attention_dim
    hw = 8 if tiny else 32
    avatar = torch.randn(1, 4, frames, hw, hw, generator=g).to(dev)
    cond = torch.randn(1, 77, dim, generator=g).to(dev)
    uncond = torch.randn(1, 77, dim, generator=g).to(dev)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    out = None
    for i in range(clips + 1):
        sync(dev)
        t0 = time.perf_counter()
        out = sample_video(fn, avatar, cond, uncond, steps=steps, guidance=3.0, seed=0, **sample_kw)
        sync(dev)
        times.append(time.perf_counter() - t0)
        if i == 0:
            print(f"  {name}: first clip {times[0]:.2f} s", flush=True)
    peak = torch.cuda.max_memory_allocated(dev) / GIB if dev.type == "cuda" else float("nan")
    del fn, unet
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return dict(
        name=name,
        frames=frames,
        s=statistics.median(times[1:]),
        first=times[0],
        peak=peak,
        out=out.float().cpu(),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny UNet, for a smoke test of this script")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--clips", type=int, default=3, help="timed clips per variant after one warm-up")
    ap.add_argument("--long-frames", type=int, default=64)
    ap.add_argument("--compile", action="store_true", help="add fp16 compile_cuda_graph (16 frames)")
    ap.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    state = build_unet(tiny=args.tiny).state_dict()
    long = args.long_frames
    cuda = dev.type == "cuda"
    variants = [
        ("16 frames, fp32 eager (reference)", 16, dict(dtype="fp32", mode="eager"), {}),
        ("16 frames, auto (fp16 + CUDA graphs on CUDA)", 16, {}, {}),
        (f"{long} frames, overlap 4, window_batch=1", long, {}, dict(window_batch=1)),
        (f"{long} frames, overlap 4, window_batch=all", long, {}, dict(window_batch=64)),
        (
            f"{long} frames, shifted, window_batch=1",
            long,
            {},
            dict(window_batch=1, window_schedule="shifted"),
        ),
        (
            f"{long} frames, shifted, window_batch=all",
            long,
            {},
            dict(window_batch=64, window_schedule="shifted"),
        ),
    ]
    if not cuda:  # fp16 kernels are missing or slow on CPUs: smoke-test the paths in fp32
        variants = [(n, f, {**p, "dtype": "fp32"}, k) for n, f, p, k in variants]
    if args.compile:
        variants.append(
            (
                "16 frames, fp16 compile_cuda_graph",
                16,
                dict(dtype="fp16", mode="compile_cuda_graph" if cuda else "compile"),
                {},
            )
        )
    rows = []
    for name, frames, prep, kw in variants:
        try:
            rows.append(run_variant(name, state, args.tiny, dev, frames, args.steps, args.clips, prep, kw))
        except Exception as exc:  # keep the other variants' numbers
            print(f"  {name}: FAILED ({type(exc).__name__}: {exc})", flush=True)
            if cuda:
                torch.cuda.empty_cache()
    ref = next((r for r in rows if "reference" in r["name"]), None)
    base = next((r for r in rows if r["name"].startswith("16 frames, auto")), None)
    card = torch.cuda.get_device_name(dev) if cuda else "CPU"
    lines = [
        f"Machine: {card}, torch {torch.__version__}, {datetime.date.today()}; {args.steps} steps, "
        f"guidance 3.0, {'tiny' if args.tiny else 'real-size'} UNet, median of {args.clips} clips.",
        "",
        "| variant | s/clip | ratio to 16-frame auto | peak GiB | rel. err vs fp32 (16 frames) "
        "| first clip s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['s'] / base['s']:.2f}x" if base else "-"
        err = "-"
        if ref is not None and r["frames"] == 16 and r is not ref:
            err = f"{((r['out'] - ref['out']).norm() / ref['out'].norm()).item():.1e}"
        lines.append(f"| {r['name']} | {r['s']:.3f} | {ratio} | {r['peak']:.2f} | {err} | {r['first']:.1f} |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.write:
        path = os.path.join(os.path.dirname(__file__), "RESULTS.md")
        with open(path, "a") as f:
            f.write(
                "\n## Sampling through the library: prepare_unet + sample_video (`bench/sample_bench.py`)\n\n"
            )
            f.write(table + "\n")
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
