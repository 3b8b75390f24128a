"""Standalone OpenCLIP text encoder (SD 2.x / AMG conditioning): penultimate layer, whole sequence.

API:
    load_text_encoder(path, device="cpu", dtype=torch.float32) -> TextEncoder
        ``open_clip_pytorch_model.bin`` (ViT-H-14; also a safetensors file or an SD 2.x
        checkpoint's ``cond_stage_model.model.*``), read with ``weights_only=True``; no hub access.
    TextEncoder.encode(prompts) -> [N, 77, D]                      (D = 1024 for ViT-H-14)
    TextEncoder.encode_with_truncation(prompts) -> ([N, 77, D], [bool] * N)
    TextEncoder.tokenize(prompts) -> ([N, 77] int64, [bool] * N)   truncated flags
    tiny_text_encoder(context_dim=32, seed=0) -> TextEncoder        random weights, same tokenizer

Semantics (the original ``FrozenOpenCLIPEmbedder`` with ``layer="penultimate"``): tokens are
``<sot> BPE... <eot>`` truncated to 77 (the last kept token becomes ``<eot>``) and padded with 0;
token + positional embedding, all transformer blocks but the last with the causal mask, then
``ln_final``. Prompts longer than 75 BPE tokens are truncated, which is logged as a warning.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import TextTransformer
from torch import nn

from amg_model.errors import CheckpointError
from amg_model.model.checkpoint import read_tensors
from amg_model.model.state_dict import compare_keys

log = logging.getLogger(__name__)

CONTEXT_LENGTH = 77
HEAD_WIDTH = 64  # OpenCLIP text towers use 64-wide heads; narrower test models use one head
_PREFIXES = ("cond_stage_model.model.", "cond_stage_model.", "model.")


def heads_for_width(width: int) -> int:
    """Number of attention heads of an OpenCLIP text tower of this width (not visible in shapes)."""
    return max(1, width // HEAD_WIDTH)


class TextEncoder(nn.Module):
    """OpenCLIP text tower plus tokenizer, returning the penultimate block's normalised sequence."""

    def __init__(self, model: TextTransformer, tokenizer: SimpleTokenizer | None = None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer or SimpleTokenizer(context_length=CONTEXT_LENGTH)

    @property
    def context_dim(self) -> int:
        return self.model.width

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """``[N, 77]`` token ids and, per prompt, whether it had more than 75 BPE tokens (truncated)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        tokens = self.tokenizer(list(prompts), context_length=CONTEXT_LENGTH)
        truncated = [len(self.tokenizer.encode(p)) > CONTEXT_LENGTH - 2 for p in prompts]
        return tokens, truncated

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, 77]`` token ids -> ``[N, 77, D]`` penultimate-block features after ``ln_final``."""
        model = self.model
        device, dtype = model.token_embedding.weight.device, model.token_embedding.weight.dtype
        x = model.token_embedding(tokens.to(device)) + model.positional_embedding.to(dtype)
        mask = model.attn_mask.to(device=device, dtype=dtype)
        batch_first = getattr(model.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for block in model.transformer.resblocks[:-1]:
            x = block(x, attn_mask=mask)
        if not batch_first:
            x = x.transpose(0, 1)
        return model.ln_final(x)

    @torch.no_grad()
    def encode_with_truncation(self, prompts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """Embed prompts; returns ``([N, 77, D], truncated flags)`` and warns about truncated prompts."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        tokens, truncated = self.tokenize(prompts)
        for prompt, cut in zip(prompts, truncated, strict=True):
            if cut:
                log.warning(
                    "prompt truncated to %d tokens (CLIP limit); the end is ignored: %r",
                    CONTEXT_LENGTH - 2,
                    prompt[:80],
                )
        return self(tokens), truncated

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Embed prompts: ``list[str]`` (N) -> ``[N, 77, D]`` on the encoder's device and dtype."""
        return self.encode_with_truncation(prompts)[0]


def _text_tower(width: int, layers: int, vocab: int, mlp_ratio: float) -> TextTransformer:
    return TextTransformer(
        context_length=CONTEXT_LENGTH,
        vocab_size=vocab,
        width=width,
        heads=heads_for_width(width),
        layers=layers,
        mlp_ratio=mlp_ratio,
        output_dim=None,
    )


def _text_state_dict(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if f"{prefix}token_embedding.weight" in tensors:
            tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            break
    if "token_embedding.weight" not in tensors:
        if any(k.startswith("text_model.") for k in tensors):
            what = "a Hugging Face transformers CLIP text model"
        elif any("first_stage_model." in k or k.startswith("encoder.down") for k in tensors):
            what = "a VAE"
        elif any("input_blocks." in k or "down_blocks." in k for k in tensors):
            what = "a UNet"
        else:
            what = f"an unknown model (first keys: {', '.join(list(tensors)[:3])})"
        raise CheckpointError(
            f"{name} is not an OpenCLIP text encoder: it looks like {what}. "
            "Select open_clip_pytorch_model.bin (OpenCLIP ViT-H-14)."
        )
    drop = ("visual.", "logit_scale", "logit_bias", "text_projection", "attn_mask")
    return {k: v for k, v in tensors.items() if not k.startswith(drop)}


def build_text_encoder(
    state_dict: dict[str, torch.Tensor],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    where: str = "state dict",
) -> TextEncoder:
    """Build a ``TextEncoder`` whose architecture is inferred from an OpenCLIP text state dict."""
    vocab, width = state_dict["token_embedding.weight"].shape
    layers = 1 + max(
        (int(m.group(1)) for k in state_dict if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))),
        default=-1,
    )
    if layers < 2 or "transformer.resblocks.0.mlp.c_fc.weight" not in state_dict:
        raise CheckpointError(f"{where}: the text transformer has {layers} blocks; the file is incomplete.")
    mlp_ratio = state_dict["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width
    with torch.device("meta"):
        model = _text_tower(width, layers, vocab, mlp_ratio)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    mismatch = compare_keys(expected, state_dict)
    if mismatch:
        raise CheckpointError(
            f"{where}: the text encoder tensors do not match an OpenCLIP text tower "
            f"(missing {mismatch.missing[:3]}, unexpected {mismatch.unexpected[:3]}, "
            f"wrong shape {mismatch.wrong_shape[:3]}); "
            "the file is damaged or another model, use open_clip_pytorch_model.bin."
        )
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in state_dict.items()}, assign=True)
    model.attn_mask = model.build_causal_mask().to(device)  # a non-persistent buffer: rebuild it
    return TextEncoder(model).eval().requires_grad_(False)


def load_text_encoder(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> TextEncoder:
    """Load the OpenCLIP text encoder from a local file (no download); see the module docstring."""
    path = Path(path)
    tensors, _ = read_tensors(path)
    encoder = build_text_encoder(_text_state_dict(tensors, path.name), device, dtype, where=path.name)
    blocks = len(encoder.model.transformer.resblocks)
    log.info("text encoder %s: width %d, %d blocks", path.name, encoder.context_dim, blocks)
    return encoder


def tiny_text_encoder(context_dim: int = 32, seed: int = 0, layers: int = 3) -> TextEncoder:
    """A random-weight OpenCLIP text tower of width ``context_dim`` with the real tokenizer (tests, demo)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _text_tower(context_dim, layers, vocab=49408, mlp_ratio=4.0)
    return TextEncoder(model).eval().requires_grad_(False)
