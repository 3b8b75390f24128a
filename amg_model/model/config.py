"""Architecture of the AMG UNet, and its inference from checkpoint tensor shapes.

API:
    UNetConfig                          frozen dataclass; ``UNetConfig()`` is the released AMG model
    UNetConfig.diffusers_kwargs()       arguments of diffusers ``UNet3DConditionModel``
    UNetConfig.to_json() / from_json()  the form stored in converted safetensors metadata
    infer_config_original(state_dict)   config of an original-layout (VGen/ModelScope) state dict
    infer_config_diffusers(state_dict)  config of a diffusers-layout state dict

The original code hard-codes 32 normalisation groups and 8 heads in the first temporal
transformer; neither is visible in tensor shapes, so inference assumes both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from amg_model.errors import CheckpointError

# The first temporal transformer (right after conv_in) always has 8 heads (original and diffusers).
FIRST_TEMPORAL_HEADS = 8


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of an AMG (ModelScope-T2V) UNet.

    Fields:
        block_out_channels: channels of each resolution level, finest first (AMG: 320, 640, 1280, 1280).
        attention_levels: per level, whether its blocks have spatial + temporal transformers
            (AMG: the three finest levels). The middle block always has them.
        layers_per_block: res blocks per encoder level; the decoder has one more (AMG: 2).
        attention_head_dim: channels per attention head, spatial and temporal (AMG: 64).
        cross_attention_dim: width of the text context tokens (AMG: 1024).
        in_channels: input channels, ``[x_t | avatar latent]`` (AMG: 8).
        out_channels: output channels, epsilon (AMG: 4).
        norm_num_groups: GroupNorm groups everywhere (AMG: 32).
    """

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    attention_levels: tuple[bool, ...] = (True, True, True, False)
    layers_per_block: int = 2
    attention_head_dim: int = 64
    cross_attention_dim: int = 1024
    in_channels: int = 8
    out_channels: int = 4
    norm_num_groups: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        object.__setattr__(self, "attention_levels", tuple(bool(a) for a in self.attention_levels))
        if len(self.block_out_channels) != len(self.attention_levels):
            raise CheckpointError(
                f"UNet config: {len(self.block_out_channels)} levels of channels but "
                f"{len(self.attention_levels)} attention flags; give one flag per level."
            )
        for c in self.block_out_channels:
            if c % self.attention_head_dim or c % self.norm_num_groups:
                raise CheckpointError(
                    f"UNet config: level width {c} is not a multiple of the head dim "
                    f"{self.attention_head_dim} and of {self.norm_num_groups} norm groups; "
                    "use widths that are."
                )

    @property
    def num_levels(self) -> int:
        return len(self.block_out_channels)

    def diffusers_kwargs(self) -> dict:
        """Keyword arguments of ``diffusers.UNet3DConditionModel`` for this architecture.

        diffusers' ``attention_head_dim`` argument is used as the head *width* of every
        transformer (it is passed as a head count and divided into the block width twice).
        """
        down = tuple("CrossAttnDownBlock3D" if a else "DownBlock3D" for a in self.attention_levels)
        up = tuple("CrossAttnUpBlock3D" if a else "UpBlock3D" for a in reversed(self.attention_levels))
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "down_block_types": down,
            "up_block_types": up,
            "block_out_channels": self.block_out_channels,
            "layers_per_block": self.layers_per_block,
            "norm_num_groups": self.norm_num_groups,
            "cross_attention_dim": self.cross_attention_dim,
            "attention_head_dim": self.attention_head_dim,
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UNetConfig:
        try:
            fields = json.loads(text)
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(
                f"UNet config {text[:80]!r} is not valid ({exc}); re-convert the file."
            ) from exc


def _shape(sd: Mapping[str, torch.Tensor], key: str, where: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{where}: tensor {key!r} is missing, so the architecture cannot be inferred.")
    return tuple(sd[key].shape)


def _head_dim(first_temporal_inner: int, where: str) -> int:
    if first_temporal_inner % FIRST_TEMPORAL_HEADS:
        raise CheckpointError(
            f"{where}: the first temporal transformer is {first_temporal_inner} wide, "
            f"not a multiple of its {FIRST_TEMPORAL_HEADS} heads; this is not an AMG UNet."
        )
    return first_temporal_inner // FIRST_TEMPORAL_HEADS


def infer_config_original(sd: Mapping[str, torch.Tensor], where: str = "checkpoint") -> UNetConfig:
    """Infer the architecture of an original-layout (``input_blocks.*``) state dict.

    Levels are runs of encoder res blocks separated by ``input_blocks.N.op`` downsamplers; a level
    has attention when its blocks have a ``.1`` spatial transformer. ``where`` names the file in errors.
    """
    conv_in = _shape(sd, "input_blocks.0.0.weight", where)
    head_dim = _head_dim(_shape(sd, "input_blocks.0.1.proj_in.weight", where)[0], where)
    out_channels = _shape(sd, "out.2.weight", where)[0]
    indices = sorted({int(m.group(1)) for k in sd if (m := re.match(r"input_blocks\.(\d+)\.", k))})
    levels: list[list[int]] = [[]]
    for n in indices[1:]:
        if f"input_blocks.{n}.op.weight" in sd:
            levels.append([])
        else:
            levels[-1].append(n)
    counts = {len(blocks) for blocks in levels}
    if len(counts) != 1 or 0 in counts:
        raise CheckpointError(
            f"{where}: encoder levels have {sorted(counts)} res blocks each; an AMG UNet has the same "
            "number in every level. The file is damaged or not an AMG UNet."
        )
    widths = tuple(
        _shape(sd, f"input_blocks.{blocks[0]}.0.out_layers.3.weight", where)[0] for blocks in levels
    )
    attention = tuple(f"input_blocks.{blocks[0]}.1.proj_in.weight" in sd for blocks in levels)
    cross = _shape(sd, "middle_block.1.transformer_blocks.0.attn2.to_k.weight", where)[1]
    return UNetConfig(
        block_out_channels=widths,
        attention_levels=attention,
        layers_per_block=counts.pop(),
        attention_head_dim=head_dim,
        cross_attention_dim=cross,
        in_channels=conv_in[1],
        out_channels=out_channels,
    )


def infer_config_diffusers(sd: Mapping[str, torch.Tensor], where: str = "checkpoint") -> UNetConfig:
    """Infer the architecture of a diffusers-layout (``down_blocks.*``) UNet3D state dict."""
    conv_in = _shape(sd, "conv_in.weight", where)
    head_dim = _head_dim(_shape(sd, "transformer_in.proj_in.weight", where)[0], where)
    num_levels = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"down_blocks\.(\d+)\.", k)))
    widths = tuple(_shape(sd, f"down_blocks.{i}.resnets.0.conv1.weight", where)[0] for i in range(num_levels))
    attention = tuple(f"down_blocks.{i}.attentions.0.proj_in.weight" in sd for i in range(num_levels))
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k)))
    cross = _shape(sd, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", where)[1]
    return UNetConfig(
        block_out_channels=widths,
        attention_levels=attention,
        layers_per_block=layers,
        attention_head_dim=head_dim,
        cross_attention_dim=cross,
        in_channels=conv_in[1],
        out_channels=_shape(sd, "conv_out.weight", where)[0],
    )
