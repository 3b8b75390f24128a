"""KL-f8 VAE architecture and key layouts: LDM (``encoder.down.0.block.0.*``) <-> diffusers ``AutoencoderKL``.

API:
    VAEConfig                                  frozen dataclass; ``VAEConfig()`` is the SD 2.1 VAE
    VAEConfig.diffusers_kwargs()               arguments of ``diffusers.AutoencoderKL``
    infer_vae_config(state_dict, layout)       architecture from tensor shapes ("ldm" or "diffusers")
    ldm_to_diffusers_vae(state_dict, config)   rename LDM keys; 1x1-conv attention projections -> Linear
    diffusers_to_ldm_vae(state_dict, config)   the inverse (used to build LDM-layout test files)
    vae_prefix_map(config)                     {LDM module prefix: diffusers module prefix}

GroupNorm groups are not visible in shapes; inference assumes 32 (as in every SD VAE).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from amg_model.errors import CheckpointError
from amg_model.model.convert import rename_key

_ATTN_RENAMES = {
    "norm.": "group_norm.",
    "q.": "to_q.",
    "k.": "to_k.",
    "v.": "to_v.",
    "proj_out.": "to_out.0.",
}
_RES_RENAMES = {
    "norm1.": "norm1.",
    "conv1.": "conv1.",
    "norm2.": "norm2.",
    "conv2.": "conv2.",
    "nin_shortcut.": "conv_shortcut.",
}
_LINEAR_RE = re.compile(r"mid_block\.attentions\.0\.to_(q|k|v|out\.0)\.weight$")


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of a KL-f8 autoencoder.

    Fields:
        block_out_channels: channels per level, finest first (SD: 128, 256, 512, 512; 4 levels = factor 8).
        layers_per_block: encoder res blocks per level; the decoder has one more (SD: 2).
        latent_channels: channels of the latent (SD: 4).
        norm_num_groups: GroupNorm groups (SD: 32).
        scaling_factor: latent scale used by the diffusion model (SD 2.x / AMG: 0.18215).
    """

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215

    def diffusers_kwargs(self) -> dict:
        n = len(self.block_out_channels)
        return {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ("DownEncoderBlock2D",) * n,
            "up_block_types": ("UpDecoderBlock2D",) * n,
            "block_out_channels": tuple(self.block_out_channels),
            "layers_per_block": self.layers_per_block,
            "latent_channels": self.latent_channels,
            "norm_num_groups": self.norm_num_groups,
            "scaling_factor": self.scaling_factor,
        }


def _res(ldm: str, diffusers: str) -> dict[str, str]:
    return {f"{ldm}{a}": f"{diffusers}{b}" for a, b in _RES_RENAMES.items()}


@functools.lru_cache(maxsize=8)
def vae_prefix_map(config: VAEConfig) -> dict[str, str]:
    """``{LDM module prefix: diffusers module prefix}`` for every module of ``config``."""
    n, layers = len(config.block_out_channels), config.layers_per_block
    table = {
        "quant_conv.": "quant_conv.",
        "post_quant_conv.": "post_quant_conv.",
    }
    for part in ("encoder", "decoder"):
        table |= {f"{part}.conv_in.": f"{part}.conv_in.", f"{part}.conv_out.": f"{part}.conv_out."}
        table[f"{part}.norm_out."] = f"{part}.conv_norm_out."
        table |= _res(f"{part}.mid.block_1.", f"{part}.mid_block.resnets.0.")
        table |= _res(f"{part}.mid.block_2.", f"{part}.mid_block.resnets.1.")
        table |= {
            f"{part}.mid.attn_1.{a}": f"{part}.mid_block.attentions.0.{b}" for a, b in _ATTN_RENAMES.items()
        }
    for i in range(n):
        for j in range(layers):
            table |= _res(f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}.")
        if i != n - 1:
            table[f"encoder.down.{i}.downsample.conv."] = f"encoder.down_blocks.{i}.downsamplers.0.conv."
        u = n - 1 - i  # LDM numbers decoder levels by resolution, diffusers in execution order
        for j in range(layers + 1):
            table |= _res(f"decoder.up.{i}.block.{j}.", f"decoder.up_blocks.{u}.resnets.{j}.")
        if i != 0:
            table[f"decoder.up.{i}.upsample.conv."] = f"decoder.up_blocks.{u}.upsamplers.0.conv."
    return table


def infer_vae_config(sd: Mapping[str, torch.Tensor], layout: str, where: str = "VAE") -> VAEConfig:
    """Infer block widths, res blocks per level and latent channels of an LDM or diffusers VAE."""
    level = r"encoder\.down\.(\d+)\." if layout == "ldm" else r"encoder\.down_blocks\.(\d+)\."
    block = (
        r"encoder\.down\.0\.block\.(\d+)\."
        if layout == "ldm"
        else r"encoder\.down_blocks\.0\.resnets\.(\d+)\."
    )
    levels = sorted({int(m.group(1)) for k in sd if (m := re.match(level, k))})
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(block, k))})
    if not levels or not blocks or "post_quant_conv.weight" not in sd:
        raise CheckpointError(
            f"{where}: the encoder levels or post_quant_conv are missing; the VAE file is incomplete."
        )
    conv = (
        "encoder.down.{i}.block.0.conv1.weight"
        if layout == "ldm"
        else "encoder.down_blocks.{i}.resnets.0.conv1.weight"
    )
    try:
        widths = tuple(sd[conv.format(i=i)].shape[0] for i in levels)
    except KeyError as exc:
        raise CheckpointError(f"{where}: tensor {exc} is missing; the VAE file is incomplete.") from exc
    return VAEConfig(
        block_out_channels=widths,
        layers_per_block=len(blocks),
        latent_channels=sd["post_quant_conv.weight"].shape[0],
    )


def ldm_to_diffusers_vae(
    sd: Mapping[str, torch.Tensor], config: VAEConfig, where: str = "VAE"
) -> dict[str, torch.Tensor]:
    """Rename an LDM-layout VAE state dict (no prefix) to ``AutoencoderKL`` keys."""
    table = vae_prefix_map(config)
    out, unknown = {}, []
    for key, value in sd.items():
        new = rename_key(key, table)
        if new is None:
            unknown.append(key)
            continue
        out[new] = value.flatten(1) if _LINEAR_RE.search(new) and value.ndim == 4 else value
    if unknown:
        raise CheckpointError(
            f"{where}: {len(unknown)} tensors are not part of a KL-f8 VAE "
            f"(e.g. {', '.join(sorted(unknown)[:3])}); "
            "select the Stable Diffusion 2.1 checkpoint or its VAE."
        )
    return out


def diffusers_to_ldm_vae(sd: Mapping[str, torch.Tensor], config: VAEConfig) -> dict[str, torch.Tensor]:
    """Rename ``AutoencoderKL`` keys to the LDM layout (Linear attention projections -> 1x1 convs)."""
    inverse = {d: o for o, d in vae_prefix_map(config).items()}
    out = {}
    for key, value in sd.items():
        new = rename_key(key, inverse)
        if new is None:
            raise CheckpointError(f"diffusers VAE state dict: {key} has no LDM counterpart in {config}.")
        out[new] = value[:, :, None, None] if _LINEAR_RE.search(key) else value
    return out
