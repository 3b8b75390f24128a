"""The transformer blocks' LayerNorm: torch against the fused kernels of ``model.fused``.

Shapes ``[rows, C]`` of the AMG UNet's transformer tokens (16 frames, 32x32 latent, guidance):
``[32768, 320]``, ``[8192, 640]``, ``[2048, 1280]``, ``[512, 1280]``. Pairs compared:

- ``F.layer_norm(x)`` against :func:`~amg_model.model.fused.layer_norm`;
- ``s = x + d`` then ``F.layer_norm(s)`` against :func:`~amg_model.model.fused.add_layer_norm`
  (the residual add before ``norm2`` and ``norm3``).

Time: GPU time per call, from CUDA events around each call queued behind a GPU sleep (so that the
CPU's launch overhead is not measured, as under CUDA graphs), median of ``--reps`` after warm-up.
Inputs stay in L2 where they fit (``[32768, 320]`` fp16 is 20 MiB) unless ``--flush-l2``. GB/s
counts the fused version's traffic (read x (and d), write (s and) y) for both rows of a pair.
The diff columns: largest difference from torch's output (both outputs for the add), and the
largest error against a float32 computation.

    python bench/norm_bench.py [--reps 50] [--dtype float16] [--flush-l2]
    python bench/norm_bench.py --device cpu --reps 3   # smoke test of this script (torch fallbacks)
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
EPS = 1e-5  # diffusers BasicTransformerBlock's LayerNorm eps


def _max_diff(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> float:
    return max((u.float() - v.float()).abs().max().item() for u, v in zip(a, b, strict=True))


def main() -> None:
    ap = kernel_arguments(__doc__.splitlines()[0], ("float16", "bfloat16", "float32"))
    ap.add_argument("--flush-l2", action="store_true", help="evict the inputs from L2 before each call")
    args = ap.parse_args()
    dev, cuda, dtype, card = kernel_device(args)
    triton = cuda and fused.triton is not None
    flush = torch.empty(256 * 2**20, dtype=torch.uint8, device=dev) if cuda and args.flush_l2 else None
    print(
        f"device: {card}, torch {torch.__version__}, {args.dtype}, {args.reps} reps, "
        f"L2 {'flushed' if flush is not None else 'warm'}, fused: {'Triton' if triton else 'torch fallback'}"
    )
    print()
    print("| shape | op | variant | us | GB/s | speed-up | max abs diff vs torch | max abs err vs fp32 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    torch.manual_seed(0)
    for rows, c in SHAPES:
        x = (torch.randn(rows, c, device=dev) * 2 + 0.5).to(dtype)
        d = torch.randn(rows, c, device=dev).to(dtype)
        w = (torch.randn(c, device=dev) * 0.2 + 1).to(dtype)
        b = (torch.randn(c, device=dev) * 0.2).to(dtype)
        size = x.numel() * x.element_size()

        def torch_add_norm(x=x, d=d, w=w, b=b, c=c):
            s = x + d
            return s, F.layer_norm(s, (c,), w, b, EPS)

        s32 = (x + d).float()  # the rounded sum, as both versions normalise it
        pairs = [
            (
                "layer_norm",
                2 * size,
                (F.layer_norm(x.float(), (c,), w.float(), b.float(), EPS),),
                ("torch F.layer_norm", lambda x=x, w=w, b=b, c=c: (F.layer_norm(x, (c,), w, b, EPS),)),
                ("fused.layer_norm", lambda x=x, w=w, b=b: (fused.layer_norm(x, w, b, EPS),)),
            ),
            (
                "add + layer_norm",
                4 * size,
                (s32, F.layer_norm(s32, (c,), w.float(), b.float(), EPS)),
                ("torch x + d, F.layer_norm", torch_add_norm),
                ("fused.add_layer_norm", lambda x=x, d=d, w=w, b=b: fused.add_layer_norm(x, d, w, b, EPS)),
            ),
        ]
        for op, traffic, exact, (ref_name, ref_fn), (new_name, new_fn) in pairs:
            ref = ref_fn()
            base = None
            for name, fn in ((ref_name, ref_fn), (new_name, new_fn)):
                out = fn()
                us = call_time_us(fn, args.reps, cuda, flush)
                base = us if base is None else base
                gbps = traffic / us / 1e3
                print(
                    f"| [{rows}, {c}] | {op} | {name} | {us:.1f} | {gbps:.0f} | {base / us:.2f} "
                    f"| {_max_diff(out, ref):.2e} | {_max_diff(out, exact):.2e} |"
                )


if __name__ == "__main__":
    main()
