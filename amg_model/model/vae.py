"""Frame-wise video VAE (Stable Diffusion 2.1 KL-f8) on diffusers ``AutoencoderKL``.

API:
    load_vae(path, device="cpu", dtype=torch.float32) -> VideoVAE
        SD 2.1 checkpoint (``first_stage_model.*``), a standalone VAE in the LDM layout, or a
        diffusers-layout VAE; .ckpt/.pth/.pt (weights_only) or .safetensors. No hub access.
    VideoVAE.encode(frames [F, 3, H, W] in [-1, 1], chunk=8) -> latents [F, 4, H/8, W/8]
        posterior MEAN times the scale factor (0.18215)
    VideoVAE.decode(latents [F, 4, h, w], chunk=8) -> frames [F, 3, 8h, 8w], about [-1, 1], not clamped
    build_vae(config, diffusers_state_dict, ...) -> VideoVAE
    tiny_vae(seed) -> VideoVAE                    random weights, widths 32, factor 8 (tests, demo)
    make_ldm_vae_state_dict(config, seed, prefix) random LDM-layout state dict (conversion tests)

Frames are encoded and decoded independently (2D VAE), in chunks of ``chunk`` frames.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

from amg_model.errors import AMGError, CheckpointError
from amg_model.model.checkpoint import read_tensors
from amg_model.model.state_dict import compare_keys
from amg_model.model.vae_convert import (
    VAEConfig,
    diffusers_to_ldm_vae,
    infer_vae_config,
    ldm_to_diffusers_vae,
)

log = logging.getLogger(__name__)

_LDM_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")


class VideoVAE(nn.Module):
    """KL-f8 autoencoder applied frame by frame, with the latent scale factor built in.

    Attributes:
        vae: the diffusers ``AutoencoderKL``.
        config: its ``VAEConfig`` (``scaling_factor`` is applied by encode/decode).
    """

    def __init__(self, config: VAEConfig, vae: AutoencoderKL | None = None):
        super().__init__()
        self.config = config
        self.vae = vae if vae is not None else AutoencoderKL(**config.diffusers_kwargs())

    @property
    def scale_factor(self) -> float:
        return self.config.scaling_factor

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def _param(self) -> torch.Tensor:
        return next(self.vae.parameters())

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """``[F, 3, H, W]`` in [-1, 1] -> ``[F, latent, H/8, W/8]`` = posterior mean * scale factor."""
        f = self.downscale
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[2] % f or frames.shape[3] % f:
            raise AMGError(
                f"VAE encode: frames have shape {list(frames.shape)}; expected [F, 3, H, W] with H and W "
                f"multiples of {f}. Resize or crop the frames."
            )
        p = self._param()
        out = [
            self.vae.encode(part.to(p.device, p.dtype)).latent_dist.mean * self.scale_factor
            for part in frames.split(max(1, chunk))
        ]
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """``[F, latent, h, w]`` -> ``[F, 3, 8h, 8w]``, about [-1, 1] (not clamped), in frame chunks."""
        if latents.ndim != 4 or latents.shape[1] != self.config.latent_channels:
            raise AMGError(
                f"VAE decode: latents have shape {list(latents.shape)}; expected "
                f"[F, {self.config.latent_channels}, h, w] (move the frame axis first)."
            )
        p = self._param()
        out = [
            self.vae.decode(part.to(p.device, p.dtype) / self.scale_factor).sample
            for part in latents.split(max(1, chunk))
        ]
        return torch.cat(out)


def build_vae(
    config: VAEConfig,
    state_dict: Mapping[str, torch.Tensor],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    where: str = "state dict",
) -> VideoVAE:
    """Build a ``VideoVAE`` from a diffusers-layout state dict, checking both key sets and shapes."""
    with torch.device("meta"):
        vae = AutoencoderKL(**config.diffusers_kwargs())
    expected = {k: v.shape for k, v in vae.state_dict().items()}
    mismatch = compare_keys(expected, state_dict)
    if mismatch:
        raise CheckpointError(
            f"{where}: the VAE tensors do not match a KL-f8 VAE {config.block_out_channels} "
            f"(missing {mismatch.missing[:3]}, unexpected {mismatch.unexpected[:3]}, "
            f"wrong shape {mismatch.wrong_shape[:3]}); "
            "the file is damaged or another model, use the Stable Diffusion 2.1 checkpoint or its VAE."
        )
    vae.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state_dict.items()}, assign=True)
    return VideoVAE(config, vae).eval().requires_grad_(False)


def _vae_tensors(tensors: dict[str, torch.Tensor], name: str) -> tuple[dict[str, torch.Tensor], str]:
    """Strip a ``first_stage_model.``/``vae.`` prefix; return (tensors, "ldm" | "diffusers")."""
    for prefix in ("first_stage_model.", "vae."):
        if any(k.startswith(prefix + "encoder.") for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            break
    if any(k.startswith("encoder.down_blocks.") for k in tensors):
        return tensors, "diffusers"
    if any(k.startswith("encoder.down.") for k in tensors):
        kept = {k: v for k, v in tensors.items() if k.startswith(_LDM_PARTS)}
        if len(kept) != len(tensors):
            log.info("%s: ignoring %d tensors outside the autoencoder", name, len(tensors) - len(kept))
        return kept, "ldm"
    if any("input_blocks." in k or "down_blocks." in k for k in tensors):
        what = "a UNet"
    elif any("token_embedding" in k or "text_model." in k for k in tensors):
        what = "a text encoder"
    else:
        what = f"an unknown model (first keys: {', '.join(list(tensors)[:3])})"
    raise CheckpointError(
        f"{name} is not a VAE: it looks like {what}. "
        "Select v2-1_512-ema-pruned.ckpt or a Stable Diffusion VAE file."
    )


def load_vae(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> VideoVAE:
    """Load the KL-f8 VAE from a local SD 2.1 checkpoint or VAE file (see the module docstring)."""
    path = Path(path)
    tensors, _ = read_tensors(path)
    tensors, layout = _vae_tensors(tensors, path.name)
    config = infer_vae_config(tensors, layout, path.name)
    if layout == "ldm":
        tensors = ldm_to_diffusers_vae(tensors, config, path.name)
    vae = build_vae(config, tensors, device, dtype, where=path.name)
    log.info("VAE %s: %s layout, %s", path.name, layout, config)
    return vae


def tiny_vae_config() -> VAEConfig:
    """4 levels (factor 8) of 32 channels, 1 res block per level."""
    return VAEConfig(block_out_channels=(32, 32, 32, 32), layers_per_block=1)


def tiny_vae(seed: int = 0) -> VideoVAE:
    """A random-weight ``VideoVAE`` with the SD latent shape ([F, 4, H/8, W/8]) for tests and the demo."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return VideoVAE(tiny_vae_config()).eval().requires_grad_(False)


def make_ldm_vae_state_dict(
    config: VAEConfig | None = None, seed: int = 0, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Random VAE weights in the LDM layout (``prefix="first_stage_model."`` mimics an SD checkpoint)."""
    config = config or tiny_vae_config()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        vae = AutoencoderKL(**config.diffusers_kwargs())
    return {prefix + k: v for k, v in diffusers_to_ldm_vae(vae.state_dict(), config).items()}
