"""The demo's models: real weights where a file is given, tiny random-weight stand-ins otherwise.

The stand-ins need no download and run in seconds on a CPU; their output is noise shaped by the
pipeline, which shows that every stage runs, not what AMG looks like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from amg_model import pipeline
from amg_model.errors import AMGError
from amg_model.model.runtime import prepare_unet

logger = logging.getLogger(__name__)

REAL_CONTEXT_DIM = 1024
TINY_CONTEXT_DIM = 32


class DemoError(AMGError):
    """The demo cannot run with the given files and settings."""


@dataclass
class DemoModels:
    """The three models the demo needs.

    Attributes:
        unet: ``(x [N, 8, F, h, w], t [N], context [N, 77, D]) -> eps [N, 4, F, h, w]``.
        vae: ``model.vae.VideoVAE`` (SD 2.1's or a tiny random one).
        text_encoder: ``model.text.TextEncoder`` (OpenCLIP ViT-H-14 or a tiny random one).
        context_dim: ``D``.
        real_vae: whether ``vae`` holds real weights.
        notes: what was used, for the user (e.g. "tiny random-weight UNet").
    """

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    context_dim: int
    real_vae: bool = False
    notes: list[str] = field(default_factory=list)

    def encode_text(self, prompt: str) -> torch.Tensor:
        """``prompt -> [1, 77, D]``."""
        return pipeline.encode_prompt(self.text_encoder, prompt)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """``[F, H, W, 3]`` in 0..1 -> ``[1, 4, F, H/8, W/8]`` (scaled by 0.18215)."""
        return pipeline.encode_frames(self.vae, frames)

    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        """``[1, 4, F, h, w]`` (scaled) -> ``[F, 8h, 8w, 3]`` in 0..1."""
        return pipeline.decode_latents(self.vae, latents)


def _tiny_unet(context_dim: int, device: torch.device, seed: int = 0) -> torch.nn.Module:
    """Random-weight 2-level AMG-shaped UNet (8 in, 4 out) with the given context width.

    Narrower than ``model.tiny``'s (16 and 32 channels) and with attention at the coarser level
    only, so the default demo (16 frames of 16x16 latents, 20 steps) samples in seconds on a CPU.
    """
    from dataclasses import replace

    from amg_model.model.tiny import tiny_unet, tiny_unet_config

    config = replace(
        tiny_unet_config(), block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=context_dim,
        attention_levels=(False, True),
    )  # fmt: skip
    return tiny_unet(seed, config).to(device)


def load_demo_models(
    unet_path: str | None = None,
    vae_path: str | None = None,
    text_encoder_path: str | None = None,
    device: str | torch.device = "cpu",
    context_dim: int | None = None,
    precision: str = "auto",
    unet_mode: str = "auto",
    offload_device: str | torch.device | None = None,
) -> DemoModels:
    """Load the demo's models: real ones where a path is given, tiny stand-ins otherwise.

    Args:
        unet_path: AMG UNet (the released ``.pth`` or a converted ``.safetensors``).
        vae_path: Stable Diffusion 2.1 checkpoint or VAE file.
        text_encoder_path: OpenCLIP ViT-H-14 weights (``open_clip_pytorch_model.bin``).
        device: where the models run.
        context_dim: text width for the tiny models (default: 1024 with a real UNet or text
            encoder, else 32).
        precision, unet_mode: UNet precision and execution mode (see
            :func:`~amg_model.model.runtime.prepare_unet`; "auto": fp16 with CUDA graphs on CUDA).
        offload_device: load the weights there instead (the CPU), for ``pipeline.MemoryOptions(offload=True)``
            that moves each model to ``device`` only for its stage; the UNet is still prepared for ``device``.
    """
    run_device = torch.device(device)
    device = torch.device(offload_device) if offload_device is not None else run_device
    notes: list[str] = []
    unet = None
    if unet_path:
        from amg_model.model.checkpoint import load_unet

        unet = load_unet(unet_path, device=device)
        notes.append(f"UNet: {unet_path}")
    if text_encoder_path:
        from amg_model.model.text import load_text_encoder

        text_encoder = load_text_encoder(text_encoder_path, device=device)
        dim = REAL_CONTEXT_DIM
        notes.append(f"text encoder: {text_encoder_path}")
    else:
        from amg_model.model.text import tiny_text_encoder

        dim = (
            getattr(unet, "context_dim", None) or context_dim
            or (REAL_CONTEXT_DIM if unet_path else TINY_CONTEXT_DIM)
        )  # fmt: skip
        text_encoder = tiny_text_encoder(dim).to(device)
        notes.append("text encoder: tiny random weights (pass --text-encoder)")
    if unet is None:
        unet = _tiny_unet(dim, device)
        notes.append("UNet: tiny random weights (output is structured noise; pass --unet for real results)")
    elif getattr(unet, "context_dim", dim) != dim:
        raise DemoError(
            f"{Path(unet_path).name} expects text width {unet.context_dim} but the text encoder gives {dim}; "
            "use the AMG UNet with the OpenCLIP ViT-H-14 encoder."
        )
    if vae_path:
        from amg_model.model.vae import load_vae

        vae = load_vae(vae_path, device=device)
        notes.append(f"VAE: {vae_path}")
    else:
        from amg_model.model.vae import tiny_vae

        vae = tiny_vae().to(device)
        notes.append("VAE: tiny random weights (pass --vae)")
    unet = prepare_unet(unet, run_device, precision, unet_mode)
    return DemoModels(unet, vae, text_encoder, dim, real_vae=bool(vae_path), notes=notes)
