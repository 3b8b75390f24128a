"""The AMG UNet: diffusers ``UNet3DConditionModel`` with 8 input channels, behind a small wrapper.

API:
    AMGUNet(config)                       random-weight model of an architecture
    AMGUNet.forward(x, t, context)        x [B, 8, F, h, w], t [B] int timesteps 0..999, context [B, 77, D]
                                          -> epsilon [B, 4, F, h, w]
    AMGUNet.unet / .config / .in_channels / .context_dim
    build_unet(config, state_dict, ...)   AMGUNet from a diffusers-layout state dict, loaded strictly
    expected_shapes(config)               {diffusers key: shape} of an architecture (no memory used)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

import torch
from diffusers import UNet3DConditionModel
from torch import nn

from amg_model.errors import AMGError, CheckpointError
from amg_model.model.config import UNetConfig
from amg_model.model.state_dict import compare_keys

log = logging.getLogger(__name__)


class AMGUNet(nn.Module):
    """Epsilon predictor of AMG: ``[x_t | avatar latent]`` + timestep + text context -> noise.

    Attributes:
        unet: the diffusers ``UNet3DConditionModel`` (LoRA already merged into its weights).
        config: the ``UNetConfig`` it was built from.
    """

    def __init__(self, config: UNetConfig, unet: UNet3DConditionModel | None = None):
        super().__init__()
        self.config = config
        self.unet = unet if unet is not None else UNet3DConditionModel(**config.diffusers_kwargs())

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def context_dim(self) -> int:
        return self.config.cross_attention_dim

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predict the noise.

        Args:
            x: ``[B, in_channels, F, h, w]`` noisy latent concatenated with the avatar latent.
            t: ``[B]`` (or scalar) integer timesteps in 0..999.
            context: ``[B, 77, context_dim]`` text embeddings.
        Returns:
            ``[B, out_channels, F, h, w]`` epsilon, in the dtype of ``x``.
        """
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise AMGError(
                f"AMG UNet input has shape {list(x.shape)}; expected [B, {self.in_channels}, F, h, w]."
            )
        if context.ndim != 3 or context.shape[-1] != self.context_dim:
            raise AMGError(
                f"AMG UNet context has shape {list(context.shape)}; expected [B, 77, {self.context_dim}]."
            )
        t = torch.as_tensor(t, device=x.device)
        return self.unet(x, t, encoder_hidden_states=context, return_dict=False)[0]


@functools.lru_cache(maxsize=8)
def expected_shapes(config: UNetConfig) -> dict[str, torch.Size]:
    """``{diffusers key: shape}`` of every tensor of the architecture, built on the meta device."""
    with torch.device("meta"):
        unet = UNet3DConditionModel(**config.diffusers_kwargs())
    return {k: v.shape for k, v in unet.state_dict().items()}


def check_state_dict(state_dict: Mapping[str, torch.Tensor], config: UNetConfig, where: str) -> None:
    """Raise ``CheckpointError`` unless ``state_dict`` has exactly the keys and shapes of ``config``."""
    expected = expected_shapes(config)
    mismatch = compare_keys(expected, state_dict)
    missing, unexpected = mismatch.missing, mismatch.unexpected
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"{where}: tensors do not match the inferred AMG UNet architecture: {'; '.join(parts)}. "
            "The file is incomplete or from another model; use the released AMG checkpoint or re-convert it."
        )
    wrong = mismatch.wrong_shape
    if wrong:
        examples = ", ".join(
            f"{k} is {tuple(state_dict[k].shape)}, expected {tuple(expected[k])}" for k in wrong[:3]
        )
        raise CheckpointError(
            f"{where}: {len(wrong)} tensors have the wrong shape ({examples}). "
            "The file is damaged or mixes two models; use the released AMG checkpoint or re-convert it."
        )


def build_unet(
    config: UNetConfig,
    state_dict: Mapping[str, torch.Tensor],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    where: str = "state dict",
) -> AMGUNet:
    """Build an ``AMGUNet`` and load a diffusers-layout state dict into it strictly.

    The module is created on the meta device and takes the given tensors (cast to ``dtype``),
    so no memory is spent on a random initialisation. ``where`` names the source in errors.
    """
    check_state_dict(state_dict, config, where)
    with torch.device("meta"):
        unet = UNet3DConditionModel(**config.diffusers_kwargs())
    tensors = {k: v.to(device=device, dtype=dtype) for k, v in state_dict.items()}
    unet.load_state_dict(tensors, strict=True, assign=True)
    leftover = [n for n, b in unet.named_buffers() if b.is_meta]
    if leftover:
        raise CheckpointError(
            f"{where}: buffers {leftover[:3]} were not initialised; this diffusers version is unsupported."
        )
    model = AMGUNet(config, unet).eval().requires_grad_(False)
    log.debug("built AMG UNet %s from %s on %s/%s", config, where, device, dtype)
    return model
