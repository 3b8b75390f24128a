"""Run test code in a subprocess under Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def run_interpreted(code: str) -> list[str]:
    """Run ``code`` under the Triton interpreter with the repository importable; returns its output lines.

    The interpreter must be switched on before Triton is imported, hence a fresh process.
    """
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def _release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def require_run_time_loop_bounds() -> None:
    """Skip the test where Triton's interpreter cannot run the persistent kernels: Triton < 3.7's
    interpreter fails to convert their loops' run-time bounds with numpy 2.3 and later ("only
    0-dimensional arrays can be converted")."""
    triton = pytest.importorskip("triton")
    if _release(triton.__version__) < (3, 7) and _release(np.__version__) >= (2, 3):
        pytest.skip("Triton < 3.7's interpreter fails on run-time loop bounds with numpy >= 2.3")


_TINY_UNET_START = """
import dataclasses
import sys
import torch
from triton.runtime.autotuner import Autotuner
from amg_model.model import channels_last, fused, small_k, tap_conv
from amg_model.model.tiny import TINY_CONTEXT_DIM, tiny_unet, tiny_unet_config
config = dataclasses.replace(tiny_unet_config(), {config})
unet = tiny_unet(seed=3, config=config).unet.eval()
g = torch.Generator().manual_seed(1)
x = torch.randn(1, 8, 2, 8, 8, generator=g)
sample, t = torch.cat([x, x]), torch.tensor([300, 300])  # guidance: one video, two texts
context = torch.randn(2, 7, TINY_CONTEXT_DIM, generator=g)
with torch.no_grad():
    ref = unet(sample, t, encoder_hidden_states=context).sample  # diffusers, float32
fused._use_triton = small_k._use_triton = lambda *tensors: True  # the kernels, interpreted
for name, module in list(sys.modules.items()):
    if name.startswith("amg_model.model."):
        for kernel in vars(module).values():
            if isinstance(kernel, Autotuner):
                kernel.configs = kernel.configs[:1]  # no autotuning
"""

_TINY_UNET_END = """
unet = channels_last.to_channels_last(unet.half())
channels_last.fuse_projections(unet)
with torch.no_grad():
    sample = sample.half().contiguous(memory_format=torch.channels_last_3d)
    out = channels_last.unet_forward(unet, sample, t, context.half(), input_copies=2)
print({report}, ((out.float() - ref).norm() / ref.norm()).item())
"""


ROUTE_EVERY_CONVOLUTION = """
def every(x, weight, bias=None, frames=None):  # the tap kernel for every convolution it can take
    return tap_conv._tap_conv_kernel.configs[0] if tap_conv.tap_conv_applies(x, weight, bias) else None
channels_last.measured_config = every
"""
"""Script lines (after ``channels_last`` and ``tap_conv`` are imported) that send every convolution the
tap kernel can take to it, not only the table's measured shapes."""


def tiny_unet_script(config: str, instrument: str, report: str) -> str:
    """Code for :func:`run_interpreted`: the tiny UNet (``tiny_unet_config()`` with the field changes
    ``config``) in float32 through diffusers, then in fp16 through the channels-last forward with
    every Triton kernel interpreted and autotuning off, after running ``instrument`` (e.g. counters
    patched into the forward). Prints the expression ``report`` and the relative L2 error."""
    return (
        _TINY_UNET_START.format(config=config)
        + textwrap.dedent(instrument)
        + _TINY_UNET_END.format(report=report)
    )
