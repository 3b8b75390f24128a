"""Command line and device of the kernel benchmarks (attention, norm, GEGLU): the same options and
the same fixed torch threads in each."""

from __future__ import annotations

import argparse

import torch


def kernel_arguments(description: str, dtypes: tuple[str, ...]) -> argparse.ArgumentParser:
    """A parser with ``--reps``, ``--dtype`` (one of ``dtypes``, the first by default) and ``--device``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--dtype", default=dtypes[0], choices=dtypes)
    ap.add_argument("--device", default="cuda")
    return ap


def kernel_device(args: argparse.Namespace) -> tuple[torch.device, bool, torch.dtype, str]:
    """``(device, is CUDA, dtype, card name)`` of the parsed arguments; one torch thread."""
    torch.set_num_threads(1)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    card = torch.cuda.get_device_name(dev) if cuda else "CPU"
    return dev, cuda, getattr(torch, args.dtype), card
