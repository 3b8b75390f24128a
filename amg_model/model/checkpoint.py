"""Safe reading of model files, AMG UNet loading and conversion to safetensors.

API:
    read_tensors(path) -> (state dict, metadata)     .pth/.pt/.ckpt/.bin (weights_only) or .safetensors
    load_unet(path, device="cpu", dtype=torch.float32) -> AMGUNet
    convert_checkpoint(in_path, out_path, dtype="fp16") -> UNetConfig

``load_unet`` accepts the released ``non_ema_0640000.pth`` (original layout, LoRA merged at load
time), files written by ``convert_checkpoint`` (diffusers layout, config in the metadata) and
smaller files of either layout (architecture inferred from shapes).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from amg_model.errors import CheckpointError
from amg_model.model.config import UNetConfig, infer_config_diffusers
from amg_model.model.convert import detect_layout, original_to_diffusers
from amg_model.model.unet import AMGUNet, build_unet, check_state_dict

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
CONFIG_KEY = "amg_unet_config"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
AMG_IN_CHANNELS = 8


def _load_pickle(path: Path) -> object:
    # mmap needs the zip format (torch >= 1.6 default); legacy files are read into memory.
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)|Unsupported class (\S+)|call reduce for (\S+)", str(exc))
        if found is None:  # the restricted unpickler also fails on streams that are not pickles at all
            raise CheckpointError(
                f"{path.name} is truncated or corrupt, or not a PyTorch checkpoint; download it again."
            ) from exc
        raise CheckpointError(
            f"{path.name} was refused: it holds Python objects other than tensors (it references "
            f"{next(g for g in found.groups() if g)}), which could run code when loaded; use the released "
            "checkpoint or a .safetensors file."
        ) from exc
    except Exception as exc:  # truncated zip, bad pickle stream, I/O error: all mean a damaged file
        raise CheckpointError(
            f"{path.name} is truncated or corrupt ({type(exc).__name__}: {str(exc)[:120]}); "
            "download it again."
        ) from exc


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path.name} is truncated or corrupt ({exc}); download or convert it again."
        ) from exc


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a state dict without running arbitrary pickle code.

    A top-level ``{"state_dict": {...}}`` wrapper and a ``module.`` prefix are removed.

    Returns:
        (``{key: tensor}`` on the CPU, safetensors metadata or ``{}``)
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; check the file name and the models folder.")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        tensors, metadata = _load_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        obj, metadata = _load_pickle(path), {}
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise CheckpointError(
                f"{path.name} holds a {type(obj).__name__}, not a state dict; it is not a model file."
            )
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if len(tensors) != len(obj):
            log.warning("%s: ignoring %d entries that are not tensors", path.name, len(obj) - len(tensors))
    else:
        raise CheckpointError(
            f"{path.name}: unsupported file type {suffix!r}; use a .safetensors, .pth, .pt or .ckpt file."
        )
    if not tensors:
        raise CheckpointError(f"{path.name} contains no tensors; it is not a model file.")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors, metadata


def _check_in_channels(in_channels: int, where: str) -> None:
    if in_channels == 4:
        raise CheckpointError(
            f"{where} is the ModelScope text-to-video base model (4 input channels); AMG needs 8 input "
            "channels (noisy latent + avatar latent): use the AMG checkpoint non_ema_0640000.pth."
        )
    if in_channels != AMG_IN_CHANNELS:
        raise CheckpointError(
            f"{where} has {in_channels} input channels; AMG needs {AMG_IN_CHANNELS}. Use the AMG checkpoint."
        )


def state_dict_to_diffusers(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str], where: str
) -> tuple[dict[str, torch.Tensor], UNetConfig]:
    """Bring a state dict of either layout to ``(diffusers state dict, config)``, checking it is AMG."""
    if detect_layout(tensors, where) == "original":
        if "input_blocks.0.0.weight" in tensors:
            _check_in_channels(tensors["input_blocks.0.0.weight"].shape[1], where)
        state, config = original_to_diffusers(tensors, where)
    else:
        if "conv_in.weight" in tensors:
            _check_in_channels(tensors["conv_in.weight"].shape[1], where)
        config = (
            UNetConfig.from_json(metadata[CONFIG_KEY])
            if CONFIG_KEY in metadata
            else infer_config_diffusers(tensors, where)
        )
        state = tensors
        check_state_dict(state, config, where)
    _check_in_channels(config.in_channels, where)
    return state, config


def load_unet(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> AMGUNet:
    """Load an AMG UNet (original release, converted safetensors, or a smaller file of either layout).

    Returns an ``AMGUNet`` in eval mode on ``device`` in ``dtype``, LoRA merged.
    """
    path = Path(path)
    tensors, metadata = read_tensors(path)
    state, config = state_dict_to_diffusers(tensors, metadata, path.name)
    return build_unet(config, state, device=device, dtype=dtype, where=path.name)


def convert_checkpoint(
    in_path: str | os.PathLike, out_path: str | os.PathLike, dtype: str = "fp16"
) -> UNetConfig:
    """Write an AMG UNet file as diffusers-layout safetensors with LoRA merged and the config in the metadata.

    Args:
        in_path: the released ``.pth`` (or any file ``load_unet`` accepts).
        out_path: destination ``.safetensors``; written atomically.
        dtype: "fp16", "bf16" or "fp32" (the LoRA merge itself is done in float64).
    Returns:
        the inferred ``UNetConfig``.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    if dtype not in DTYPES:
        raise CheckpointError(f"convert: dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}.")
    if out_path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"convert: output {out_path.name} must end in .safetensors.")
    if out_path.resolve() == in_path.resolve():
        raise CheckpointError(
            f"convert: output {out_path.name} would overwrite the input; choose another name."
        )
    tensors, metadata = read_tensors(in_path)
    state, config = state_dict_to_diffusers(tensors, metadata, in_path.name)
    state = {k: v.to(DTYPES[dtype]).contiguous() for k, v in state.items()}
    tmp = out_path.with_name(out_path.name + ".partial")
    save_file(
        state, str(tmp), metadata={"format": "pt", CONFIG_KEY: config.to_json(), "amg_layout": "diffusers"}
    )
    os.replace(tmp, out_path)
    log.info("converted %s -> %s (%s, %d tensors)", in_path.name, out_path.name, dtype, len(state))
    return config
