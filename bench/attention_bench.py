"""Temporal and cross-attention of the AMG UNet: the Triton kernels against scaled_dot_product_attention.

The temporal transformers attend along the frames of every pixel. Shapes of a 16-frame 256x256
clip (32x32 latent) with guidance (batch 2), per UNet level (pixels, channels): (1024, 320),
(256, 640), (64, 1280), (16, 1280): ``N = 2 * pixels`` sequences of ``L = 16`` tokens, ``C / 64``
heads. ``q, k, v`` are chunks of one ``[N, L, 3C]`` tensor, as the fused projection gives them.

Variants: ``sdpa_attention`` (torch's choice of backend), SDPA forced to the cuDNN, flash and
memory-efficient backends (a backend that errors is reported and skipped), and ``short_attention``
(plus its kernel with other warp counts). Time: GPU time per call, from CUDA events around each
call queued behind a GPU sleep (so that the CPU's launch overhead is not measured, as under CUDA
graphs), median of ``--reps`` after warm-up; inputs stay in L2 where they fit. The last column is
the largest difference from ``sdpa_attention``'s output.

With ``--cross``: the spatial transformers' cross-attention instead, one attention per video over all
its frames' queries (``Lq = frames * pixels``) to the 77 text tokens (``k, v`` chunks of one
``[2, 77, 2C]`` projection): SDPA's backends against ``few_keys_attention`` (and other block sizes and
warp counts of its kernel).

    python bench/attention_bench.py [--frames 16] [--reps 50] [--dtype float16] [--cross]
    python bench/attention_bench.py --device cpu --reps 3   # smoke test of this script (no Triton)
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from call_timing import call_time_us  # noqa: E402
from kernel_setup import kernel_arguments, kernel_device  # noqa: E402

from amg_model.model.attention import sdpa_attention  # noqa: E402
from amg_model.model.short_attention import (  # noqa: E402
    _short_attention_triton,
    few_keys_attention,
    few_keys_attention_applies,
    short_attention,
    short_attention_applies,
)

LEVELS = ((1024, 320), (256, 640), (64, 1280), (16, 1280))  # (pixels, channels) at a 32x32 latent
BATCH = 2  # guidance: conditional and unconditional
HEAD_DIM = 64


def _forced(backend: SDPBackend) -> Callable:
    def attend(q, k, v, heads):
        with sdpa_kernel([backend]):
            return sdpa_attention(q, k, v, heads)

    return attend


def _sdpa_variants() -> list[tuple[str, Callable]]:
    return [
        ("sdpa_attention (default backend)", sdpa_attention),
        ("sdpa cuDNN", _forced(SDPBackend.CUDNN_ATTENTION)),
        ("sdpa flash", _forced(SDPBackend.FLASH_ATTENTION)),
        ("sdpa efficient", _forced(SDPBackend.EFFICIENT_ATTENTION)),
    ]


def _variants(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> list[tuple[str, Callable]]:
    variants = _sdpa_variants()
    triton = short_attention_applies(q, k, v, heads)
    variants.append((f"short_attention ({'Triton' if triton else 'SDPA fallback'})", short_attention))
    if triton:  # other launch settings of the same kernel
        for warps in (1, 4):
            kernel = functools.partial(_short_attention_triton, num_warps=warps)
            variants.append((f"short_attention num_warps={warps}", kernel))
    return variants


def _cross_variants(q, k, v, heads: int) -> list[tuple[str, Callable]]:
    variants = _sdpa_variants()
    triton = few_keys_attention_applies(q, k, v, heads)
    variants.append((f"few_keys_attention ({'Triton' if triton else 'SDPA fallback'})", few_keys_attention))
    if triton:
        for block, warps in ((32, 2), (64, 8), (128, 4), (128, 8)):
            kernel = functools.partial(_short_attention_triton, num_warps=warps, block_q=block)
            variants.append((f"few_keys block_q={block} num_warps={warps}", kernel))
    return variants


def main() -> None:
    ap = kernel_arguments(__doc__.splitlines()[0], ("float16", "bfloat16", "float32"))
    ap.add_argument("--frames", type=int, default=16, help="sequence length L")
    ap.add_argument("--cross", action="store_true", help="cross-attention shapes (77 text keys)")
    args = ap.parse_args()
    dev, cuda, dtype, card = kernel_device(args)
    print(f"device: {card}, torch {torch.__version__}, {args.dtype}, L = {args.frames}, {args.reps} reps")
    print()
    print(
        "| shape (N, Lq, Lk, C, heads) | variant | us | speed-up vs sdpa_attention | max abs diff vs sdpa |"
    )
    print("|---|---|---:|---:|---:|")
    torch.manual_seed(0)
    for pixels, c in LEVELS:
        heads = c // HEAD_DIM
        if args.cross:
            n, lq, lk = BATCH, args.frames * pixels, 77
            q = torch.randn(n, lq, c, device=dev, dtype=dtype)
            k, v = torch.randn(n, lk, 2 * c, device=dev, dtype=dtype).chunk(2, dim=-1)
        else:
            n, lq = BATCH * pixels, args.frames
            lk = lq
            q, k, v = torch.randn(n, lq, 3 * c, device=dev, dtype=dtype).chunk(3, dim=-1)
        shape = f"({n}, {lq}, {lk}, {c}, {heads})"
        ref = sdpa_attention(q, k, v, heads).float()
        base = None
        for name, attend in (_cross_variants if args.cross else _variants)(q, k, v, heads):
            try:
                diff = (attend(q, k, v, heads).float() - ref).abs().max().item()
            except RuntimeError as err:  # a backend that does not take these inputs
                print(f"| {shape} | {name} | error: {str(err).splitlines()[0][:80]} | | |")
                continue
            us = call_time_us(functools.partial(attend, q, k, v, heads), args.reps, cuda)
            base = us if base is None else base
            print(f"| {shape} | {name} | {us:.1f} | {base / us:.2f} | {diff:.2e} |")


if __name__ == "__main__":
    main()
