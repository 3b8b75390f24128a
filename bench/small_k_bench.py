"""The feed-forward GEGLU projections and small token projections of the UNet's transformer blocks:
cuBLAS and the fused GEGLU kernel against the persistent Triton kernels of ``amg_model.model.small_k``.

Shapes (16 frames, 32x32 latent, guidance): the feed-forward input projection with its GEGLU,
``[rows, K] x [K, 8K]`` for ``[32768, 320]``, ``[8192, 640]``, ``[2048, 1280]`` and ``[512, 1280]``
(``fused``'s one-tile kernel, cuBLAS + ``fused.geglu``, cuBLAS alone, and
``small_k.linear_geglu_tma_paired``, which ``fused.linear_geglu`` uses on Hopper GPUs),
and plain projections ``[32768, 320] x [320, 320] + bias``, ``[32768, 320] x [320, 960]`` (fused q, k,
v; no bias) and ``[8192, 640] x [640, 640] + bias`` (cuBLAS ``F.linear``, ``small_k.linear_tma``).

Time: GPU time per call from CUDA events around each call queued behind a GPU sleep (the CPU's
launch overhead is not measured, as under CUDA graphs), median of ``--reps`` after warm-up (which
includes the Triton kernels' autotuning); ``--flush`` evicts the inputs from L2 before each call.
"first call" is the wall time of the first call: compilation (unless cached on disk) and autotuning.
TFLOP/s counts the product's 2 * rows * K * N; the error is ``max |out - ref| / (1 + |ref|)``
against the fp32 product of the same inputs.

    python bench/small_k_bench.py [--reps 50] [--dtype float16] [--flush]
    python bench/small_k_bench.py --device cpu --reps 1   # smoke test of this script (torch fallbacks)
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from call_timing import call_time_us  # noqa: E402
from kernel_setup import kernel_arguments, kernel_device  # noqa: E402

from amg_model.model import fused, small_k  # noqa: E402

GEGLU_SHAPES = ((32768, 320), (8192, 640), (2048, 1280), (512, 1280))  # rows, K; projection [K, 2 * 4K]
LINEAR_SHAPES = (
    (32768, 320, 320, True),
    (32768, 320, 960, False),
    (8192, 640, 640, True),
)  # rows, K, N, bias
CPU_ROWS = 64  # rows per shape in the CPU smoke test


def _first_call(fn, cuda: bool) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def _rel_err(out: torch.Tensor, exact: torch.Tensor) -> float:
    return ((out.float() - exact).abs() / (1 + exact.abs())).max().item()


def _kernel_config(kernel) -> str | None:
    config = getattr(kernel, "best_config", None)
    return None if config is None else str(config)


def main() -> None:
    ap = kernel_arguments(__doc__.splitlines()[0], ("float16", "bfloat16"))
    ap.add_argument("--flush", action="store_true", help="evict the inputs from L2 before each timed call")
    args = ap.parse_args()
    dev, cuda, dtype, card = kernel_device(args)
    flush = torch.empty(256 * 2**20, dtype=torch.uint8, device=dev) if args.flush and cuda else None
    triton_version = "none" if small_k.triton is None else small_k.triton.__version__
    print(
        f"device: {card}, torch {torch.__version__}, triton {triton_version}, {args.dtype}, {args.reps} reps"
    )
    print(f"L2 flushed before each call: {flush is not None}")
    print()
    print("| shape | variant | us | TFLOP/s | speed-up | max rel. err vs fp32 | first call (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    torch.manual_seed(0)
    chosen = []

    def run(label: str, variants, flop: int, exact: torch.Tensor) -> None:
        # variants: (name, fn, the kernel whose autotuned configuration to report or None, whether
        # its output is compared with exact); speed-ups against the first
        base = None
        for name, fn, kernel, compared in variants:
            out, first = _first_call(fn, cuda)
            err = f"{_rel_err(out, exact):.2e}" if compared else "-"
            del out
            us = call_time_us(fn, args.reps, cuda, flush)
            base = us if base is None else base
            tflops = flop / us / 1e6
            print(f"| {label} | {name} | {us:.1f} | {tflops:.0f} | {base / us:.2f} | {err} | {first:.2f} |")
            config = _kernel_config(kernel) if cuda and kernel is not None else None
            if config is not None:
                chosen.append(f"{label}, {name}: {config}")

    for rows, k in GEGLU_SHAPES:
        rows = rows if cuda else CPU_ROWS
        inner = 4 * k
        x = torch.randn(rows, k, device=dev).to(dtype)
        w = (torch.randn(2 * inner, k, device=dev) / k**0.5).to(dtype)
        b = (torch.randn(2 * inner, device=dev) * 0.1).to(dtype)
        p = x.float() @ w.float().T + b.float()
        exact = p[:, :inner] * F.gelu(p[:, inner:])
        del p
        variants = (
            # the one-tile kernel runs only on a GPU; the baseline row is the torch version elsewhere
            ("fused one-tile GEGLU kernel",
             lambda x=x, w=w, b=b: (fused._linear_geglu_one_tile if cuda else fused.linear_geglu)(x, w, b),
             getattr(fused, "_linear_geglu_kernel", None), True),
            ("F.linear + fused.geglu", lambda x=x, w=w, b=b: fused.geglu(F.linear(x, w, b)), None, True),
            ("F.linear alone (cuBLAS, no gating)", lambda x=x, w=w, b=b: F.linear(x, w, b), None, False),
            ("small_k.linear_geglu_tma_paired",
             lambda x=x, w=w, b=b: small_k.linear_geglu_tma_paired(x, w, b),
             getattr(small_k, "_geglu_tma_paired_kernel", None), True),
        )  # fmt: skip
        run(f"[{rows}, {k}] x [{k}, {2 * inner}] GEGLU", variants, 2 * rows * k * 2 * inner, exact)
        del exact, x, w, b

    for rows, k, n, has_bias in LINEAR_SHAPES:
        rows = rows if cuda else CPU_ROWS
        x = torch.randn(rows, k, device=dev).to(dtype)
        w = (torch.randn(n, k, device=dev) / k**0.5).to(dtype)
        b = (torch.randn(n, device=dev) * 0.1).to(dtype) if has_bias else None
        exact = x.float() @ w.float().T + (b.float() if has_bias else 0)
        variants = (
            ("F.linear (cuBLAS)", lambda x=x, w=w, b=b: F.linear(x, w, b), None, True),
            ("small_k.linear_tma", lambda x=x, w=w, b=b: small_k.linear_tma(x, w, b),
             getattr(small_k, "_linear_tma_kernel", None), True),
        )  # fmt: skip
        label = f"[{rows}, {k}] x [{k}, {n}]" + (" + bias" if has_bias else "")
        run(label, variants, 2 * rows * k * n, exact)
        del exact, x, w, b

    if chosen:
        print("\nautotuned configurations:")
        print("\n".join(chosen))


if __name__ == "__main__":
    main()
