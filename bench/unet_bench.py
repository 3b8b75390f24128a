"""Speed and memory of AMG sampling variants on one GPU (real-size UNet, random weights).

Every variant runs the same job: one 16-frame 256x256 clip (latent 32x32), 20 DDIM steps with
classifier-free guidance (two UNet branches per step). Prints a table (median seconds per clip,
TFLOP/s, fraction of the measured bf16 matrix peak, peak GiB, error vs. the fp32 result) and
appends it to bench/RESULTS.md with the card, torch version and date.

    python bench/unet_bench.py --variants all            # on a CUDA machine
    python bench/unet_bench.py --variants fp16_batched --clips 3
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from amg_model.model.fast import FastUNet  # noqa: E402
from amg_model.sampling.sample import sample_video  # noqa: E402

UNET_TFLOP_PER_CALL = 4.90  # one forward, 16 frames, 32x32 latent, batch 1 (docs/amg-model facts)


def build_unet(seed: int = 0, tiny: bool = False):
    """The real-size AMG UNet (diffusers layout, 8 input channels) with random fp32 weights."""
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    if tiny:  # smoke test of the script on a CPU
        unet = UNet3DConditionModel(
            in_channels=8,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            norm_num_groups=8,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            cross_attention_dim=1024,
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            attention_head_dim=8,
        )
    else:
        unet = UNet3DConditionModel(in_channels=8, out_channels=4)
    # Random weights that keep activations O(1) through the network, so errors are meaningful.
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.normal_(0.0, 1.0 / fan_in**0.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
    return unet.eval()


def one_call_per_branch(unet):
    """The original release's guidance: the batch-2 call split into two batch-1 UNet calls."""

    def call(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return torch.cat([unet(x[i : i + 1], t[i : i + 1], context[i : i + 1]) for i in range(x.shape[0])])

    call.dtype = unet.dtype
    return call


def sample_clip(unet, avatar, cond, uncond, noise, steps: int) -> torch.Tensor:
    """One clip through the library sampler (guidance 3, the original DDIM)."""
    return sample_video(unet, avatar, cond, uncond, steps=steps, guidance=3.0, noise=noise)


# Kernel-name fragments of each kind of GPU work (cuBLAS, cuDNN, CUTLASS, flash and this package's kernels).
KERNEL_KINDS = (
    ("attention", ("sdpa", "fmha", "flash", "attention")),
    ("convolution", ("convolution", "conv2d", "conv3d", "fprop", "implicit", "winograd")),
    ("matrix product", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "linear_geglu")),
)


def kernel_kind(name: str) -> str:
    """Which kind of work a GPU kernel does, from its name: a matrix kind or "memory-bound / other"."""
    low = name.lower()
    for kind, fragments in KERNEL_KINDS:
        if any(f in low for f in fragments):
            return kind
    return "memory-bound / other"


def print_profile(model: FastUNet, noise, avatar, cond, uncond) -> None:
    """Top GPU kernels of one guided UNet call: the eager forward, or the compiled one in mode "compile"
    (graph-replayed modes hide their kernels, so they are profiled through the eager forward)."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.cat([torch.cat([noise, avatar], 1)] * 2).to(model.unet.dtype)
    t = torch.full((2,), 501, device=x.device)
    ctx = torch.cat([cond, uncond]).to(x.dtype)
    forward = model._direct.forward if model.mode == "compile" else model._eager
    copies = {"input_copies": 2} if model.channels_last else {}  # as guided_eps calls it
    forward(x, t, ctx, **copies)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        forward(x, t, ctx, **copies)
        torch.cuda.synchronize()
    events = prof.key_averages()
    total = sum(e.device_time_total for e in events)
    kernels = sum(e.count for e in events)
    print(f"  GPU time of one {model.mode} call: {total / 1e3:.1f} ms in {kernels} kernels")
    kinds: dict[str, list[float]] = {}
    for e in events:
        entry = kinds.setdefault(kernel_kind(e.key), [0.0, 0])
        entry[0] += e.device_time_total
        entry[1] += e.count
    for kind, (us, count) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        print(f"    {kind:22s} {us / 1e3:6.2f} ms  {count:6d} kernels  {100 * us / total:4.1f} %")
    print(events.table(sort_by="device_time_total", row_limit=25, max_name_column_width=90))
    print("  most frequent kernels (count, GPU ms, name):")
    for e in sorted(events, key=lambda e: -e.count)[:15]:
        if e.device_time_total > 0:
            print(f"    {e.count:6d} {e.device_time_total / 1e3:7.2f}  {e.key[:110]}")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        forward(x, t, ctx, **copies)
        torch.cuda.synchronize()
    launchers: dict[tuple[str, str], int] = {}
    for e in prof.events():
        for k in getattr(e, "kernels", []):
            if "memset" in k.name.lower() or "memcpy" in k.name.lower():
                key = (e.name, k.name)
                launchers[key] = launchers.get(key, 0) + 1
    print("  memory sets and copies by the operator that issued them (count, operator, kernel):")
    for (op, kernel), count in sorted(launchers.items(), key=lambda kv: -kv[1]):
        print(f"    {count:6d}  {op[:50]:50s}  {kernel[:50]}")
    print("  operators by the GPU time of the kernels they launch themselves, per input shapes:")
    by_op = prof.key_averages(group_by_input_shape=True)
    print(by_op.table(sort_by="self_device_time_total", row_limit=40, max_name_column_width=40))


def measure(fn, clips: int):
    torch.cuda.synchronize()
    times = []
    out = None
    for _ in range(clips):
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="all")
    ap.add_argument("--clips", type=int, default=5)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--profile", default="", help="comma-separated variants: print their top GPU kernels")
    ap.add_argument("--tiny", action="store_true", help="tiny UNet, for a smoke test of this script")
    args = ap.parse_args()
    torch.set_num_threads(4)
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True

    base = build_unet(tiny=args.tiny)
    g = torch.Generator().manual_seed(1)
    f = args.frames
    noise = torch.randn(1, 4, f, 32, 32, generator=g)
    avatar = torch.randn(1, 4, f, 32, 32, generator=g) * 0.8
    cond = torch.randn(1, 77, 1024, generator=g)
    uncond = torch.randn(1, 77, 1024, generator=g)

    # bf16 matrix peak, measured here
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    peak = 20 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12
    del a, b

    def variant(mode: str, dtype=torch.float16, cl: bool = False, qkv: bool = False, **kw) -> dict:
        """FastUNet settings of one variant; guidance batched unless ``cfg_batched=False``."""
        spec = dict(dtype=dtype, mode=mode, cfg_batched=True)
        spec.update(kw)
        if cl:
            spec.update(channels_last=True, fused_projections=qkv)
        return spec

    variants = {
        "orig_fp32_autocast_2calls": variant("eager", torch.float32, autocast=True, cfg_batched=False),
        "fp16_batched": variant("eager"),
        "bf16_batched": variant("eager", torch.bfloat16),
        "fp16_cudagraph": variant("cuda_graph"),
        "fp16_cudagraph_nobench": variant("cuda_graph", cudnn_benchmark=False),
        "fp16_compile": variant("compile"),
        "fp16_compile_cudagraph": variant("compile_cuda_graph"),
        "bf16_compile_cudagraph": variant("compile_cuda_graph", torch.bfloat16),
        # the channels-last forward (cl), with fused q/k/v weights (qkv), flash attention forced (flash)
        "fp16_channels_last": variant("eager", cl=True),
        "fp16_cl_cudagraph": variant("cuda_graph", cl=True),
        "fp16_cl_flash_cudagraph": variant("cuda_graph", cl=True, attention="flash"),
        "fp16_cl_qkv_cudagraph": variant("cuda_graph", cl=True, qkv=True),
        "fp16_cl_qkv_cudagraph_nobench": variant("cuda_graph", cl=True, qkv=True, cudnn_benchmark=False),
        "fp16_cl_qkv_sdpatemporal_cudagraph": variant("cuda_graph", cl=True, qkv=True, short_attention=False),
        "fp16_cl_qkv_unfusednorm_cudagraph": variant("cuda_graph", cl=True, qkv=True, fused_norms=False),
        "fp16_cl_qkv_flash_cudagraph": variant("cuda_graph", cl=True, qkv=True, attention="flash"),
        "fp16_cl_qkv_flash": variant("eager", cl=True, qkv=True, attention="flash"),
        "fp16_cl_compile": variant("compile", cl=True),
        "fp16_cl_compile_cudagraph": variant("compile_cuda_graph", cl=True),
        "fp16_cl_qkv_compile_cudagraph": variant("compile_cuda_graph", cl=True, qkv=True),
    }
    chosen = list(variants) if args.variants == "all" else args.variants.split(",")

    # fp32 reference (one clip)
    avatar, cond, uncond = avatar.to(dev), cond.to(dev), uncond.to(dev)
    ref_model = FastUNet(base.to(dev), dtype=torch.float32, mode="eager")
    x_ref = sample_clip(ref_model, avatar, cond, uncond, noise, args.steps).float().cpu()
    del ref_model
    base.cpu()
    torch.cuda.empty_cache()

    rows = []
    for name in chosen:
        spec = dict(variants[name])
        autocast = spec.pop("autocast", False)
        cfg_batched = spec.pop("cfg_batched")
        torch.backends.cudnn.benchmark = spec.pop("cudnn_benchmark", True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model = FastUNet(build_unet(tiny=args.tiny).to(spec["dtype"]).to(dev), **spec, autocast=autocast)
        unet = model if cfg_batched else one_call_per_branch(model)
        run = functools.partial(sample_clip, unet, avatar, cond, uncond, noise, args.steps)
        t0 = time.perf_counter()
        run()  # warm-up / compile
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        med, times, out = measure(run, args.clips)
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
        print(
            f"  {name}: allocated now {torch.cuda.memory_allocated() / 2**30:.2f} GiB, "
            f"reserved {torch.cuda.memory_reserved() / 2**30:.2f} GiB",
            flush=True,
        )
        if name in args.profile.split(","):
            print_profile(model, noise.to(dev), avatar, cond, uncond)
        err = ((out.float().cpu() - x_ref).norm() / x_ref.norm()).item()
        tflop = UNET_TFLOP_PER_CALL * f / 16 * 2 * args.steps
        rows.append((name, med, tflop / med, tflop / med / peak, peak_gib, err, first))
        print(
            f"{name:28s} {med:7.3f} s  first {first:6.1f} s  {tflop / med:6.1f} TFLOP/s  "
            f"{peak_gib:5.2f} GiB  err {err:.2e}  runs {' '.join(f'{t:.3f}' for t in times)}",
            flush=True,
        )
        del model, unet, run
        torch.cuda.empty_cache()

    card = torch.cuda.get_device_name()
    head = (
        f"\n### UNet sampling, {f} frames 256x256, {args.steps} steps + CFG: {card}, "
        f"torch {torch.__version__}, "
        f"{datetime.date.today()} (bf16 matmul peak measured {peak:.0f} TFLOP/s)\n\n"
        "| variant | median s/clip | TFLOP/s | of peak | peak GiB | rel. L2 err vs fp32 "
        "| first clip s |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    table = "".join(
        f"| {r[0]} | {r[1]:.3f} | {r[2]:.0f} | {r[3]:.0%} | {r[4]:.2f} | {r[5]:.1e} | {r[6]:.1f} |\n"
        for r in rows
    )
    print(head + table)
    if not args.no_write:
        with open(args.results, "a") as fh:
            fh.write(head + table)


if __name__ == "__main__":
    main()
