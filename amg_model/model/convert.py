"""Original (VGen/ModelScope) UNet key layout <-> diffusers ``UNet3DConditionModel`` layout, LoRA merge.

API:
    detect_layout(state_dict, where)            "original" or "diffusers", else CheckpointError (what it is)
    merge_lora(state_dict, where)               (state dict with W + up @ down merged, number of adapters)
    original_to_diffusers(state_dict, where)    (diffusers state dict, UNetConfig): merge, map, check keys
    diffusers_to_original(state_dict, config)   the inverse mapping of base tensors (used to build test files)
    prefix_map(config)                          {original module prefix: diffusers module prefix}
    rename_key(key, table)                      key with its longest prefix in table replaced (None: no match)

The mapping is a bijection of module prefixes (``input_blocks.1.0.in_layers.0.`` ->
``down_blocks.0.resnets.0.norm1.``); transformer internals keep their names. The temporal
transformers' ``proj_in``/``proj_out`` are Conv1d (kernel 1) in the original and Linear in diffusers.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping

import torch

from amg_model.errors import CheckpointError
from amg_model.model.config import UNetConfig, infer_config_original
from amg_model.model.unet import check_state_dict

log = logging.getLogger(__name__)

LORA_RE = re.compile(r"^(?P<attn>.+)\.to_(?P<proj>q|k|v|out)_lora\.(?P<part>down_linear|up_linear)\.weight$")
_CONV1D_RE = re.compile(r"(^transformer_in|\.temp_attentions\.\d+)\.proj_(in|out)\.weight$")

_RES_RENAMES = {
    "in_layers.0.": "norm1.",
    "in_layers.2.": "conv1.",
    "emb_layers.1.": "time_emb_proj.",
    "out_layers.0.": "norm2.",
    "out_layers.3.": "conv2.",
    "skip_connection.": "conv_shortcut.",
}


def _res_prefixes(orig: str, block: str, j: int) -> dict[str, str]:
    table = {f"{orig}{o}": f"{block}.resnets.{j}.{d}" for o, d in _RES_RENAMES.items()}
    table[f"{orig}temopral_conv."] = f"{block}.temp_convs.{j}."  # sic: the original spells it "temopral"
    return table


@functools.lru_cache(maxsize=8)
def prefix_map(config: UNetConfig) -> dict[str, str]:
    """``{original module prefix: diffusers module prefix}`` for every module of ``config``."""
    table = {
        "time_embed.0.": "time_embedding.linear_1.",
        "time_embed.2.": "time_embedding.linear_2.",
        "input_blocks.0.0.": "conv_in.",
        "input_blocks.0.1.": "transformer_in.",
        "out.0.": "conv_norm_out.",
        "out.2.": "conv_out.",
    }
    layers, last = config.layers_per_block, config.num_levels - 1
    n = 1
    for i, attn in enumerate(config.attention_levels):
        for j in range(layers):
            table |= _res_prefixes(f"input_blocks.{n}.0.", f"down_blocks.{i}", j)
            if attn:
                table[f"input_blocks.{n}.1."] = f"down_blocks.{i}.attentions.{j}."
                table[f"input_blocks.{n}.2."] = f"down_blocks.{i}.temp_attentions.{j}."
            n += 1
        if i != last:
            table[f"input_blocks.{n}.op."] = f"down_blocks.{i}.downsamplers.0.conv."
            n += 1
    table |= _res_prefixes("middle_block.0.", "mid_block", 0)
    table["middle_block.1."] = "mid_block.attentions.0."
    table["middle_block.2."] = "mid_block.temp_attentions.0."
    table |= _res_prefixes("middle_block.3.", "mid_block", 1)
    n = 0
    for u, attn in enumerate(reversed(config.attention_levels)):
        for j in range(layers + 1):
            table |= _res_prefixes(f"output_blocks.{n}.0.", f"up_blocks.{u}", j)
            if attn:
                table[f"output_blocks.{n}.1."] = f"up_blocks.{u}.attentions.{j}."
                table[f"output_blocks.{n}.2."] = f"up_blocks.{u}.temp_attentions.{j}."
            if u != last and j == layers:
                table[f"output_blocks.{n}.{3 if attn else 1}.conv."] = f"up_blocks.{u}.upsamplers.0.conv."
            n += 1
    return table


def rename_key(key: str, table: Mapping[str, str]) -> str | None:
    """Replace the longest prefix of ``key`` found in ``table``; None when no prefix matches."""
    cut = len(key)
    while (cut := key.rfind(".", 0, cut)) > 0:
        head = key[: cut + 1]
        if head in table:
            return table[head] + key[cut + 1 :]
    return None


def detect_layout(sd: Mapping[str, torch.Tensor], where: str = "checkpoint") -> str:
    """Return "original" or "diffusers" for an AMG UNet state dict; else raise saying what it looks like."""
    keys = list(sd)
    has = lambda pattern: any(pattern in k for k in keys)  # noqa: E731
    if any(k.startswith("input_blocks.") for k in keys) and has("temopral_conv"):
        return "original"
    if any(k.startswith("down_blocks.") for k in keys) and has("temp_convs."):
        return "diffusers"
    if any(k.startswith("model.diffusion_model.") for k in keys) or (
        any(k.startswith("input_blocks.") for k in keys) and not has("temopral_conv")
    ):
        what = "an image (Stable Diffusion) UNet in the LDM layout, with no temporal layers"
    elif any(k.startswith("down_blocks.") for k in keys):
        what = "an image UNet in the diffusers layout, with no temporal layers"
    elif has("first_stage_model.") or has("encoder.down.") or has("decoder.up.") or has("quant_conv"):
        what = "a VAE (autoencoder)"
    elif has("token_embedding") or has("transformer.resblocks") or has("text_model."):
        what = "a text encoder (CLIP)"
    elif not keys:
        what = "an empty state dict"
    else:
        what = f"an unknown model (first keys: {', '.join(keys[:3])})"
    raise CheckpointError(
        f"{where} is not an AMG UNet checkpoint: it looks like {what}. "
        "Select the AMG UNet (non_ema_0640000.pth or a file converted from it)."
    )


def merge_lora(
    sd: Mapping[str, torch.Tensor], where: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], int]:
    """Merge every rank-r LoRA adapter (scale 1) into its base weight: ``W + up @ down``.

    Adapters are ``<attn>.to_{q,k,v,out}_lora.{down_linear [r, in], up_linear [out, r]}.weight`` and
    merge into ``<attn>.to_{q,k,v}.weight`` / ``<attn>.to_out.0.weight``. The product is formed in
    float64 and rounded once to the base dtype.

    Returns:
        (state dict without adapter keys, number of adapters merged)
    """
    base: dict[str, torch.Tensor] = {}
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        m = LORA_RE.match(key)
        if m is None:
            base[key] = value
            continue
        proj = "to_out.0" if m["proj"] == "out" else f"to_{m['proj']}"
        adapters.setdefault(f"{m['attn']}.{proj}.weight", {})[m["part"]] = value
    for target, parts in adapters.items():
        if set(parts) != {"down_linear", "up_linear"}:
            raise CheckpointError(
                f"{where}: the LoRA adapter of {target} has only {list(parts)}; the file is incomplete, "
                "download it again."
            )
        if target not in base:
            raise CheckpointError(
                f"{where}: a LoRA adapter targets {target}, which is not in the file; it is damaged."
            )
        weight, down, up = base[target], parts["down_linear"], parts["up_linear"]
        if (
            down.ndim != 2
            or up.ndim != 2
            or (up.shape[0], down.shape[1]) != tuple(weight.shape)
            or up.shape[1] != down.shape[0]
        ):
            raise CheckpointError(
                f"{where}: the LoRA adapter of {target} has shapes {list(up.shape)} @ {list(down.shape)}, "
                f"which does not fit the weight {list(weight.shape)}; the file is damaged."
            )
        delta = up.to(torch.float64) @ down.to(torch.float64)
        base[target] = (weight.to(torch.float64) + delta).to(weight.dtype)
    return base, len(adapters)


def original_to_diffusers(
    sd: Mapping[str, torch.Tensor], where: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], UNetConfig]:
    """Convert an original-layout AMG state dict (LoRA adapters optional) to the diffusers layout.

    Merges LoRA, infers the architecture from shapes, renames every key, squeezes the temporal
    Conv1d projections to Linear, and checks both key sets and all shapes against the architecture.

    Returns:
        (diffusers state dict, inferred UNetConfig)
    """
    detect_layout(sd, where)
    merged, n_lora = merge_lora(sd, where)
    config = infer_config_original(merged, where)
    table = prefix_map(config)
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in merged.items():
        new = rename_key(key, table)
        if new is None:
            unmapped.append(key)
            continue
        if _CONV1D_RE.search(new) and value.ndim == 3 and value.shape[-1] == 1:
            value = value.squeeze(-1)
        out[new] = value
    if unmapped:
        raise CheckpointError(
            f"{where}: {len(unmapped)} tensors do not belong to the inferred AMG UNet "
            f"(e.g. {', '.join(sorted(unmapped)[:3])}); the file mixes another model in, "
            "use the released checkpoint."
        )
    check_state_dict(out, config, where)
    log.info(
        "%s: %d tensors mapped to diffusers, %d LoRA adapters merged, %s", where, len(out), n_lora, config
    )
    return out, config


def diffusers_to_original(sd: Mapping[str, torch.Tensor], config: UNetConfig) -> dict[str, torch.Tensor]:
    """Map a diffusers-layout state dict of ``config`` to original keys (Linear -> Conv1d where needed)."""
    inverse = {d: o for o, d in prefix_map(config).items()}
    out = {}
    for key, value in sd.items():
        new = rename_key(key, inverse)
        if new is None:
            raise CheckpointError(f"diffusers state dict: {key} has no original counterpart in {config}.")
        out[new] = value.unsqueeze(-1) if _CONV1D_RE.search(key) else value
    return out
