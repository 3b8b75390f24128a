"""The transformer blocks' feed-forward input: projection + GEGLU as cuBLAS + a Triton gating kernel
against one matrix-product kernel with the gating in its epilogue (``fused.linear_geglu``).

Shapes ``[rows, K] x [K, 2I]`` of the AMG UNet's feed-forward layers (16 frames, 32x32 latent,
guidance): ``[32768, 320]``, ``[8192, 640]``, ``[2048, 1280]``, ``[512, 1280]`` with ``I = 4K``.

Time: GPU time per call from CUDA events around each call queued behind a GPU sleep (the CPU's
launch overhead is not measured, as under CUDA graphs), median of ``--reps`` after warm-up (which
includes the autotuning of the fused kernel). TFLOP/s counts the projection's 2 * rows * K * 2I.

    python bench/geglu_bench.py [--reps 50] [--dtype float16]
    python bench/geglu_bench.py --device cpu --reps 3   # smoke test of this script (torch fallbacks)
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from call_timing import call_time_us  # noqa: E402
from kernel_setup import kernel_arguments, kernel_device  # noqa: E402

from amg_model.model import fused  # noqa: E402

SHAPES = ((32768, 320), (8192, 640), (2048, 1280), (512, 1280))


def main() -> None:
    args = kernel_arguments(__doc__.splitlines()[0], ("float16", "bfloat16")).parse_args()
    dev, cuda, dtype, card = kernel_device(args)
    print(f"device: {card}, torch {torch.__version__}, {args.dtype}, {args.reps} reps")
    print()
    print("| shape | variant | us | TFLOP/s | speed-up | max rel. err vs fp32 |")
    print("|---|---|---:|---:|---:|---:|")
    torch.manual_seed(0)
    chosen = []
    for rows, k in SHAPES:
        inner = 4 * k
        x = torch.randn(rows, k, device=dev).to(dtype)
        w = (torch.randn(2 * inner, k, device=dev) / k**0.5).to(dtype)
        b = (torch.randn(2 * inner, device=dev) * 0.1).to(dtype)
        p = x.float() @ w.float().T + b.float()
        exact = p[:, :inner] * F.gelu(p[:, inner:])
        del p
        flop = 2 * rows * k * 2 * inner
        base = None
        variants = (
            ("F.linear + fused.geglu", lambda x=x, w=w, b=b: fused.geglu(F.linear(x, w, b))),
            ("fused.linear_geglu", lambda x=x, w=w, b=b: fused.linear_geglu(x, w, b)),
        )
        for name, fn in variants:
            err = ((fn().float() - exact).abs() / (1 + exact.abs())).max().item()
            us = call_time_us(fn, args.reps, cuda)
            base = us if base is None else base
            print(f"| [{rows}, {k}] x [{k}, {2 * inner}] | {name} | {us:.1f} | {flop / us / 1e6:.0f} "
                  f"| {base / us:.2f} | {err:.2e} |")  # fmt: skip
        kernel = getattr(fused, "_linear_geglu_kernel", None)
        if cuda and getattr(kernel, "best_config", None) is not None:
            chosen.append(f"[{rows}, {k}]: {kernel.best_config}")
    if chosen:
        print("\nautotuned configuration of fused.linear_geglu per shape:")
        print("\n".join(chosen))


if __name__ == "__main__":
    main()
