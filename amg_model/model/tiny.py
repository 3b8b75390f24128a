"""Tiny random-weight models and original-layout checkpoints, for tests and the embedded demo.

API:
    tiny_unet_config()                                 2 levels, widths 32/64, head dim 8, context 32
    random_diffusers_state_dict(config, seed, device)  random tensors for every diffusers key ("meta": shapes)
    make_original_state_dict(config, seed, lora_rank)  the same in the original key layout, plus LoRA adapters
    tiny_unet(seed, config)                            AMGUNet with random weights
    tiny_text_encoder(context_dim, seed)               re-exported from amg_model.model.text
    tiny_vae(seed)                                     re-exported from amg_model.model.vae

Weights are drawn with a fan-in scale so that activations stay O(1); nothing is zero-initialised,
so every tensor (including LoRA ``up`` weights) influences the output.
"""

from __future__ import annotations

import math
import re

import torch

from amg_model.model.config import UNetConfig
from amg_model.model.convert import diffusers_to_original
from amg_model.model.unet import AMGUNet, build_unet, expected_shapes

TINY_CONTEXT_DIM = 32
_ATTN_RE = re.compile(r"^(?P<attn>.+\.attn[12])\.to_q\.weight$")


def tiny_unet_config() -> UNetConfig:
    """A 2-level AMG-shaped UNet: attention at the finest level, 1 res block per level, 8 input channels."""
    return UNetConfig(
        block_out_channels=(32, 64),
        attention_levels=(True, False),
        layers_per_block=1,
        attention_head_dim=8,
        cross_attention_dim=TINY_CONTEXT_DIM,
        in_channels=8,
        out_channels=4,
    )


def _random_tensor(key: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    if key.endswith(".weight") and len(shape) >= 2:
        return torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
    if key.endswith(".weight"):  # norm scales
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    return 0.1 * torch.randn(shape, generator=gen)


def random_diffusers_state_dict(
    config: UNetConfig, seed: int = 0, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Random fp32 tensors for every key of ``config`` in the diffusers layout; on "meta" only shapes."""
    gen = torch.Generator().manual_seed(seed)
    if torch.device(device).type == "meta":
        return {k: torch.empty(s, device="meta") for k, s in expected_shapes(config).items()}
    return {k: _random_tensor(k, s, gen).to(device) for k, s in expected_shapes(config).items()}


def make_lora_adapters(
    original: dict[str, torch.Tensor], rank: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random LoRA adapters (``to_{q,k,v,out}_lora.{down,up}_linear.weight``) for every attention."""
    gen = torch.Generator().manual_seed(seed + 1)
    adapters = {}
    for key in sorted(original):
        m = _ATTN_RE.match(key)
        if m is None:
            continue
        attn = m["attn"]
        for proj, weight_key in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("out", "to_out.0")):
            out_dim, in_dim = original[f"{attn}.{weight_key}.weight"].shape
            prefix = f"{attn}.to_{proj}_lora"
            if original[key].is_meta:
                down, up = torch.empty(rank, in_dim, device="meta"), torch.empty(out_dim, rank, device="meta")
            else:
                down = torch.randn(rank, in_dim, generator=gen) / math.sqrt(in_dim)
                up = 0.2 * torch.randn(out_dim, rank, generator=gen) / math.sqrt(rank)
            adapters[f"{prefix}.down_linear.weight"] = down
            adapters[f"{prefix}.up_linear.weight"] = up
    return adapters


def make_original_state_dict(
    config: UNetConfig | None = None, seed: int = 0, lora_rank: int = 4, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """A random state dict in the released file's layout (``input_blocks.*``, ``temopral_conv``,
    Conv1d temporal projections) with ``lora_rank`` adapters on every attention (0: none).

    With ``device="meta"`` it holds shapes only, so the full-size default config costs no memory.
    """
    config = config or tiny_unet_config()
    original = diffusers_to_original(random_diffusers_state_dict(config, seed, device), config)
    if lora_rank:
        original |= make_lora_adapters(original, lora_rank, seed)
    return original


def tiny_unet(seed: int = 0, config: UNetConfig | None = None) -> AMGUNet:
    """A random-weight fp32 ``AMGUNet`` on the CPU (default: ``tiny_unet_config()``)."""
    config = config or tiny_unet_config()
    return build_unet(config, random_diffusers_state_dict(config, seed), where="tiny UNet")


def tiny_text_encoder(context_dim: int = TINY_CONTEXT_DIM, seed: int = 0):
    """See ``amg_model.model.text.tiny_text_encoder``."""
    from amg_model.model.text import tiny_text_encoder as make

    return make(context_dim, seed)


def tiny_vae(seed: int = 0):
    """See ``amg_model.model.vae.tiny_vae``."""
    from amg_model.model.vae import tiny_vae as make

    return make(seed)
