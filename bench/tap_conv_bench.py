"""The UNet's 3x3 and 3x1x1 convolutions: cuDNN against the tap kernel of ``amg_model.model.tap_conv``.

Shapes: every convolution of one guided UNet call (16 frames, 32x32 latent) that the channels-last
forward could send to ``tap_conv``, found by running it on meta tensors, with how often each occurs;
"table" marks those in ``tap_conv.FASTER_THAN_CUDNN`` (the ones the forward sends), and the last total
is the time with that routing.
cuDNN runs the same channels-last tensors (``F.conv2d``, and ``F.conv3d`` on the channels-last-3d
view for the temporal ones). The total is the convolutions' GPU time per UNet call.

Time: GPU time per call from CUDA events around each call queued behind a GPU sleep (as under CUDA
graphs), median of ``--reps`` after warm-up (which includes the kernel's autotuning).

    python bench/tap_conv_bench.py [--reps 30]
    python bench/tap_conv_bench.py --device cpu --reps 2   # smoke test (torch fallback)
"""

from __future__ import annotations

import collections
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from call_timing import call_time_us  # noqa: E402
from kernel_setup import kernel_arguments, kernel_device  # noqa: E402

from amg_model.model import channels_last, tap_conv  # noqa: E402


def unet_convolutions() -> collections.Counter:
    """``(kind, x shape, output channels, frames, bias) -> calls`` of one guided channels-last call."""
    from diffusers import UNet3DConditionModel

    with torch.device("meta"):
        unet = UNet3DConditionModel(in_channels=8, out_channels=4).half()
    channels_last.to_channels_last(unet)
    calls = collections.Counter()
    measured_config = channels_last.measured_config

    def record(x, weight, bias=None, frames=None):  # every convolution the forward could send
        kind = "3x1x1" if frames else "3x3"
        calls[(kind, tuple(x.shape), weight.shape[0], frames or 0, bias is not None)] += 1
        return None  # meta tensors: torch's convolution

    channels_last.measured_config = record
    try:
        sample = torch.empty(2, 8, 16, 32, 32, device="meta", dtype=torch.half)
        sample = sample.contiguous(memory_format=torch.channels_last_3d)
        context = torch.empty(2, 77, 1024, device="meta", dtype=torch.half)
        timestep = torch.tensor([500, 500], device="meta")
        channels_last.unet_forward(unet, sample, timestep, context, input_copies=2)
    finally:
        channels_last.measured_config = measured_config
    return calls


def _cudnn_temporal(x, weight, frames):
    n, c, h, w = x.shape
    x5 = x.permute(0, 2, 3, 1).reshape(n // frames, frames, h, w, c).permute(0, 4, 1, 2, 3)
    return F.conv3d(x5, weight, None, padding=(1, 0, 0))


def main() -> None:
    ap = kernel_arguments(__doc__.splitlines()[0], ("float16", "bfloat16"))
    args = ap.parse_args()
    dev, cuda, dtype, card = kernel_device(args)
    calls = unet_convolutions()
    print(
        f"device: {card}, torch {torch.__version__}, {args.dtype}, {args.reps} reps, "
        f"{sum(calls.values())} convolutions per UNet call through tap_conv"
    )
    print()
    print(
        "| kind | x [N, C, H, W] | Cout | calls | cuDNN us | tap us | speed-up | TFLOP/s (tap) "
        "| max rel. err | table |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    total_cudnn = total_tap = total_routed = 0.0
    chosen = []
    for (kind, shape, cout, frames, has_bias), count in sorted(calls.items(), key=lambda kv: -kv[1]):
        n, c, h, w = shape
        if not cuda:
            n, h, w = min(n, 4 if frames else 2), min(h, 4), min(w, 4)
            frames = min(frames, 4)
        x = torch.randn(n, c, h, w, device=dev).to(dtype).contiguous(memory_format=torch.channels_last)
        taps = (3, 3) if kind == "3x3" else (3, 1, 1)
        weight = (torch.randn(cout, c, *taps, device=dev) / (3 * c) ** 0.5).to(dtype)
        memory_format = torch.channels_last if kind == "3x3" else torch.channels_last_3d
        weight = weight.contiguous(memory_format=memory_format)
        bias = torch.randn(cout, device=dev).to(dtype) if has_bias else None
        if kind == "3x3":
            ref = F.conv2d(x.float(), weight.float(), None if bias is None else bias.float(), padding=1)

            def cudnn(x=x, weight=weight, bias=bias):
                return F.conv2d(x, weight, bias, padding=1)

            def tap(x=x, weight=weight, bias=bias):
                return tap_conv.conv3x3(x, weight, bias)
        else:
            y = _cudnn_temporal(x.float(), weight.float(), frames)
            ref = y.permute(0, 2, 1, 3, 4).reshape(n, cout, h, w)

            def cudnn(x=x, weight=weight, frames=frames):
                return _cudnn_temporal(x, weight, frames)

            def tap(x=x, weight=weight, frames=frames):
                return tap_conv.temporal_conv3(x, weight, frames)

        err = ((tap().float() - ref).abs() / (1 + ref.abs())).max().item()
        t_cudnn, t_tap = call_time_us(cudnn, args.reps, cuda), call_time_us(tap, args.reps, cuda)
        total_cudnn += count * t_cudnn
        total_tap += count * t_tap
        routed = tap_conv.problem_key(shape, (cout, c, *taps), frames) in tap_conv.FASTER_THAN_CUDNN
        total_routed += count * (t_tap if routed else t_cudnn)
        flop = 2 * n * h * w * cout * c * (9 if kind == "3x3" else 3)
        config = getattr(tap_conv._tap_conv_kernel, "best_config", None) if cuda else None
        chosen.append(f"{kind} {shape} -> {cout}: {config}")
        print(
            f"| {kind} | {list(shape)} | {cout} | {count} | {t_cudnn:.1f} | {t_tap:.1f} "
            f"| {t_cudnn / t_tap:.2f} | {flop / t_tap / 1e6:.0f} | {err:.1e} | {'yes' if routed else ''} |"
        )
    print(f"| **total per UNet call (us)** | | | | **{total_cudnn:.0f}** | **{total_tap:.0f}** | | | | |")
    print(f"| **with the table's routing (us)** | | | | | **{total_routed:.0f}** | | | | |")
    print()
    print("tap kernel configurations (the last autotuned one at each shape):")
    print("\n".join(chosen))


if __name__ == "__main__":
    main()
