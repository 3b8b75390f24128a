"""Run the AMG UNet fast on the device at hand: precision and execution mode, chosen automatically.

On CUDA the default is float16 weights with the eager forward captured as CUDA graphs (one per input
shape, captured on the first call of that shape in about a second): about 2x the eager speed with no
compilation wait. ``torch.compile`` is faster still but opt-in, because its first call compiles for
1.5 to 4 minutes. Compiled kernels are cached on disk by torch inductor (its FX graph and
AOTAutograd caches are on by default): by default under ``<temp dir>/torchinductor_<user>``, or the
folder in the environment variable ``TORCHINDUCTOR_CACHE_DIR``. A later process with the same torch
version, GPU and input shapes reuses them and starts much sooner, though tracing the model still
takes a while; a temporary folder may be emptied on reboot, so point ``TORCHINDUCTOR_CACHE_DIR`` at a
lasting folder to keep the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from amg_model.errors import AMGError
from amg_model.model.fast import MODES, FastUNet

logger = logging.getLogger(__name__)

PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
UNET_MODES = ("auto", *MODES)


class RuntimeSettingError(AMGError):
    """A precision or execution mode cannot be used on the chosen device."""


def resolve_unet_settings(
    device: torch.device | str, dtype: str = "auto", mode: str = "auto"
) -> tuple[str, str]:
    """The precision and mode that ``"auto"`` stands for on a device, after checking both names.

    ``"auto"`` is fp16 with CUDA graphs on CUDA and fp32 eager elsewhere.

    Returns:
        ``(precision, mode)``, e.g. ``("fp16", "cuda_graph")``.
    """
    device = torch.device(device)
    if dtype != "auto" and dtype not in PRECISIONS:
        raise RuntimeSettingError(f"precision {dtype!r} is unknown; use auto, {', '.join(PRECISIONS)}.")
    if mode not in UNET_MODES:
        raise RuntimeSettingError(f"UNet mode {mode!r} is unknown; use one of {', '.join(UNET_MODES)}.")
    cuda = device.type == "cuda"
    if dtype == "auto":
        dtype = "fp16" if cuda else "fp32"
    if mode == "auto":
        mode = "cuda_graph" if cuda else "eager"
    if not cuda and mode in ("cuda_graph", "compile_cuda_graph"):
        raise RuntimeSettingError(f"UNet mode {mode} needs a CUDA device; use eager or compile on {device}.")
    return dtype, mode


def prepare_unet(
    unet: torch.nn.Module,
    device: torch.device | str,
    dtype: str = "auto",
    mode: str = "auto",
    channels_last: bool | None = None,
) -> FastUNet | Callable:
    """Move the UNet to ``device`` and wrap it as a fast callable for ``sample_video``.

    Args:
        unet: an :class:`~amg_model.model.unet.AMGUNet` (or its diffusers ``UNet3DConditionModel``);
            its weights are moved and cast in place.
        device: where it runs.
        dtype: ``"auto"`` (fp16 on CUDA, fp32 elsewhere), ``"fp16"``, ``"bf16"`` or ``"fp32"``. fp16 stays
            about 10x closer to the fp32 result than bf16 at the same speed.
        mode: ``"auto"`` (``"cuda_graph"`` on CUDA, ``"eager"`` elsewhere), ``"eager"``, ``"cuda_graph"``,
            ``"compile"`` or ``"compile_cuda_graph"`` (compiled and graph-replayed: the fastest, after a
            1.5 to 4 minute first call per input shape).
        channels_last: run the channels-last forward (``model.channels_last``: no layout conversions,
            fused GroupNorm and GEGLU kernels, one matrix product per attention's q/k/v) instead of
            the diffusers forward; same function. ``None``: on CUDA only, where it is faster.

    Returns:
        A :class:`~amg_model.model.fast.FastUNet`: ``(x [N, 8, F, h, w], t [N], context [N, 77, D]) ->
        eps [N, 4, F, h, w]`` with a ``dtype`` attribute. A ``unet`` that is no torch module (a
        FastUNet already, or a function) is returned unchanged.
    """
    device = torch.device(device)
    precision, mode = resolve_unet_settings(device, dtype, mode)
    if not isinstance(unet, torch.nn.Module):
        return unet  # already prepared, or a plain function standing in for the UNet
    inner = getattr(unet, "unet", unet)  # AMGUNet wraps the diffusers model
    # cast before moving: a float32 copy on the card would need twice the memory for a moment
    inner = torch.nn.Module.to(inner, dtype=PRECISIONS[precision]).to(device)
    if mode.startswith("compile"):
        logger.warning(
            "UNet mode %s: the first sampling step compiles the UNet (1.5 to 4 minutes; faster when the "
            "torch inductor disk cache already holds it), later steps and clips are fast",
            mode,
        )
    logger.info("UNet on %s: %s, %s", device, precision, mode)
    if channels_last is None:
        channels_last = device.type == "cuda"
    return FastUNet(
        inner,
        dtype=PRECISIONS[precision],
        mode=mode,
        channels_last=channels_last,
        fused_projections=channels_last,
    )
