"""Command line: ``python -m amg_model convert ...`` and ``python -m amg_model demo ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace

from amg_model.errors import AMGError

DTYPES = ("fp16", "bf16", "fp32")
# Kept in step with smpl.procedural.KINDS and camera.presets.PRESET_NAMES (a test checks), so that
# building the parser imports no torch.
MOTION_KINDS = ("idle", "walk", "run", "wave", "jump", "turn")
CAMERA_PRESETS = (
    "static", "orbit", "dolly", "truck", "pedestal", "pan", "tilt", "zoom", "crane", "arc", "dolly_zoom",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``amg_model`` argument parser with its ``convert`` and ``demo`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m amg_model", description="AMG: avatar-guided video generation."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    conv = sub.add_parser("convert", help="convert the released AMG .pth (LoRA merged) to .safetensors")
    conv.add_argument("input", help="original checkpoint, e.g. non_ema_0640000.pth")
    conv.add_argument("output", help="output .safetensors file")
    conv.add_argument("--dtype", choices=DTYPES, default="fp16", help="output tensor dtype (default fp16)")

    demo = sub.add_parser(
        "demo",
        help="run the avatar pipeline headless: render avatars, generate, write mp4s and PNGs",
        description="Body + motion + camera -> avatar render -> VAE -> AMG sampling -> VAE decode. "
        "Without weights, tiny random models run (a pipeline check in seconds, no downloads).",
    )
    demo.add_argument("--out", default="output/demo", help="output folder (default output/demo)")
    demo.add_argument(
        "--frames", type=int, default=16, help="frames at 8 fps (default 16 = 2 s; above 16: windowed)"
    )
    demo.add_argument(
        "--size", type=int, default=128, help="frame size in pixels, multiple of 8 (default 128)"
    )
    demo.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20, as the original)")
    demo.add_argument("--seed", type=int, default=0, help="noise seed (same seed, same video on any device)")
    demo.add_argument("--guidance", type=float, default=3.0, help="text guidance scale (default 3.0)")
    demo.add_argument("--prompt", default=None, help="text prompt")
    demo.add_argument("--negative", default="", help="negative prompt (default empty, as the original)")
    demo.add_argument(
        "--body", default="mannequin", help="'mannequin' (default) or an SMPL/SMPL-H/SMPL-X model file"
    )
    demo.add_argument(
        "--motion", choices=MOTION_KINDS, default="walk", help="procedural motion (default walk)"
    )
    demo.add_argument("--motion-file", default=None, help="motion file to use instead (resampled to 8 fps)")
    demo.add_argument(
        "--camera", choices=CAMERA_PRESETS, default="orbit", help="camera preset (default orbit)"
    )
    demo.add_argument(
        "--camera-file",
        default=None,
        help="camera file instead: .json (AMG camera) or .txt (CameraCtrl poses)",
    )
    demo.add_argument(
        "--fixed-aim",
        action="store_true",
        help="aim the preset at the subject's centre over the clip, not per frame",
    )
    demo.add_argument("--unet", default=None, help="AMG UNet weights (.pth or converted .safetensors)")
    demo.add_argument("--vae", default=None, help="Stable Diffusion 2.1 VAE weights")
    demo.add_argument("--text-encoder", default=None, help="OpenCLIP ViT-H-14 weights")
    demo.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    demo.add_argument(
        "--reproduce",
        choices=("change_background",),
        default=None,
        help="re-run an original demo from its released latents (see --data)",
    )
    demo.add_argument("--data", default=None, help="AMG demo data folder (default ../shared/data/amg-demo)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    demo.add_argument(
        "--precision",
        choices=("auto", *DTYPES),
        default="auto",
        help="UNet precision (default auto: fp16 on CUDA, fp32 on the CPU)",
    )
    demo.add_argument(
        "--unet-mode",
        default="auto",
        choices=("auto", "eager", "cuda_graph", "compile", "compile_cuda_graph"),
        help="UNet execution (default auto: cuda_graph on CUDA, eager on the CPU); the compile modes are "
        "fastest but compile for 1.5-4 minutes on first use (cached on disk by torch)",
    )
    demo.add_argument(
        "--offload",
        action="store_true",
        help="for 8 GiB cards: keep the text encoder, VAE and UNet (unless compiled) on the CPU except "
        "during their own stage, decode the VAE in chunks, sample one window per UNet call",
    )
    demo.add_argument(
        "--window-batch",
        type=int,
        default=None,
        help="16-frame windows per UNet call for clips over 16 frames (default: 1 with --offload or on "
        "the CPU, else as many as fit)",
    )
    demo.add_argument(
        "--window-schedule",
        choices=("overlap", "shifted"),
        default="overlap",
        help="overlapping blended windows (default) or non-overlapping windows with moving seams",
    )
    demo.add_argument(
        "--vae-chunk", type=int, default=None, help="frames per VAE call (default 8; 4 with --offload)"
    )
    return parser


def _convert(args: argparse.Namespace) -> int:
    from amg_model.model.checkpoint import convert_checkpoint

    convert_checkpoint(args.input, args.output, dtype=args.dtype)
    print(f"wrote {args.output}")
    return 0


def _memory_options(args: argparse.Namespace):
    """The demo's ``pipeline.MemoryOptions``: --offload, --window-batch, --window-schedule, --vae-chunk."""
    from amg_model.pipeline import MemoryOptions

    memory = MemoryOptions.low_vram() if args.offload else MemoryOptions()
    changes = {"window_batch": args.window_batch, "vae_chunk": args.vae_chunk}
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(memory, window_schedule=args.window_schedule, **changes)


def _demo(args: argparse.Namespace) -> int:
    from amg_model import demo

    common = dict(
        out_dir=args.out,
        steps=args.steps,
        seed=args.seed,
        guidance=args.guidance,
        unet_path=args.unet,
        vae_path=args.vae,
        text_encoder_path=args.text_encoder,
        device=args.device,
        progress=not args.no_progress,
        precision=args.precision,
        unet_mode=args.unet_mode,
    )
    if args.reproduce == "change_background":
        result = demo.reproduce_change_background(data_dir=args.data, **common)
    else:
        if args.data:
            print("note: --data is only used with --reproduce change_background", file=sys.stderr)
        result = demo.run_demo(
            frames=args.frames, size=args.size, prompt=args.prompt or demo.DEFAULT_PROMPT,
            negative=args.negative, body=args.body, motion=args.motion, motion_file=args.motion_file,
            camera=args.camera, camera_file=args.camera_file, follow=not args.fixed_aim,
            memory=_memory_options(args), **common,
        )  # fmt: skip
    for note in result.notes:
        print(f"  {note}")
    for path in result.files:
        detail = f" ({result.frames} frames at {result.fps} fps)" if path.suffix == ".mp4" else ""
        print(f"wrote {path}{detail}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _convert(args) if args.command == "convert" else _demo(args)
    except AMGError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
