"""Conversions at the edge between ComfyUI and the library: folders, dtypes, images, progress.

Nothing here computes model maths; these helpers only translate ComfyUI's conventions
(registered folders, IMAGE ``[F, H, W, C]`` in 0..1, ProgressBar, interruption) to the library's.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os

import comfy.model_management
import comfy.utils
import folder_paths
import torch

import amg_model.errors as errors

log = logging.getLogger(__name__)

AMG_FOLDER = "amg"
SMPL_FOLDER = "smpl"
WEIGHT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
UNET_DTYPE_OPTIONS = ["auto", *WEIGHT_DTYPES]
SUPPORTED_UNET_DTYPES = [torch.float16, torch.bfloat16, torch.float32]


def register_model_folders() -> None:
    """Register ``models/amg`` (AMG UNets) and ``models/smpl`` (body models); honours extra_model_paths."""
    for name in (AMG_FOLDER, SMPL_FOLDER):
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))


def model_files(folder: str) -> list[str]:
    """File names listed in a registered model folder (empty when the folder is missing)."""
    try:
        return folder_paths.get_filename_list(folder)
    except KeyError:
        return []


def model_file_path(folder: str, name: str) -> str:
    """Full path of ``name`` in a registered folder; AMGError naming the folder when it is not there."""
    path = folder_paths.get_full_path(folder, name) if name else None
    if path is None or not os.path.isfile(path):
        raise errors.CheckpointError(
            f"{name or '(no file)'} is not in models/{folder}; put the file there (or in a folder listed in "
            "extra_model_paths.yaml) and refresh the node."
        )
    return path


def input_file_path(name: str) -> str:
    """Full path of a file in ComfyUI's input folder (``name`` may carry an ``[input]`` annotation)."""
    if not name or not folder_paths.exists_annotated_filepath(name):
        raise errors.AMGError(
            f"{name or '(no file)'} is not in ComfyUI's input folder; upload it or pick another file."
        )
    return folder_paths.get_annotated_filepath(name)


def input_files(extensions: tuple[str, ...]) -> list[str]:
    """Sorted names of the input-folder files with one of ``extensions`` (lower case, with dot)."""
    folder = folder_paths.get_input_directory()
    if not os.path.isdir(folder):
        return []
    return sorted(
        f
        for f in os.listdir(folder)
        if os.path.isfile(os.path.join(folder, f)) and os.path.splitext(f)[1].lower() in extensions
    )


def file_fingerprint(name: str) -> float:
    """Modification time of an input-folder file, so ComfyUI re-runs a loader when the file changes."""
    try:
        return os.path.getmtime(folder_paths.get_annotated_filepath(name))
    except OSError:
        return float("nan")


def read_json(path: str):
    """The content of a JSON file; AMGError naming the file when it is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.AMGError(
            f"{os.path.basename(path)} is not a readable JSON file ({exc}); check the file."
        ) from exc


def person_list(text: str) -> list[int | str] | None:
    """Persons named in a widget, ``"0, 2"`` or ``"alice, bob"``; None (all persons) when empty."""
    items = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not items:
        return None
    return [int(p) if p.lstrip("-").isdigit() else p for p in items]


def compute_device() -> torch.device:
    """The device ComfyUI computes on (the GPU, or the CPU with --cpu)."""
    return comfy.model_management.get_torch_device()


@contextlib.contextmanager
def autograd():
    """Autograd for library optimisations (fitting): ComfyUI runs nodes under ``torch.inference_mode``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def autograd_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of a module whose tensors can take part in autograd (outputs of other nodes are
    inference tensors, which autograd refuses to save)."""
    with torch.inference_mode(False):
        return copy.deepcopy(module)


def unet_dtypes(option: str, path: str, load_device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    """``(weight dtype, manual cast dtype or None)`` for a weight-dtype option, the way ComfyUI picks them.

    "auto" lets ComfyUI choose for the device and free memory; the parameter count is estimated
    from the file size (2 bytes per parameter, so fp32 files are over-estimated, which errs safe).
    """
    if option == "auto":
        dtype = comfy.model_management.unet_dtype(
            model_params=os.path.getsize(path) // 2, supported_dtypes=SUPPORTED_UNET_DTYPES
        )
    elif option in WEIGHT_DTYPES:
        dtype = WEIGHT_DTYPES[option]
    else:
        raise errors.CheckpointError(
            f"weight dtype {option!r} is not one of {', '.join(UNET_DTYPE_OPTIONS)}."
        )
    return dtype, comfy.model_management.unet_manual_cast(dtype, load_device, SUPPORTED_UNET_DTYPES)


def video_frames(images: torch.Tensor, what: str = "the avatar video") -> torch.Tensor:
    """Check an IMAGE batch ``[F, H, W, C]`` used as a video and return its RGB part ``[F, H, W, 3]``.

    Raises AMGError unless H and W are multiples of 8 (the VAE's downscale factor).
    """
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise errors.AMGError(
            f"{what} has shape {list(images.shape)}; expected an IMAGE batch [frames, height, width, 3]."
        )
    frames, height, width = images.shape[:3]
    if height % 8 or width % 8:
        raise errors.AMGError(
            f"{what} is {width}x{height}; width and height must be multiples of 8 "
            f"(for example {width // 8 * 8 or 8}x{height // 8 * 8 or 8})."
        )
    if images.shape[-1] == 1:
        return images.expand(-1, -1, -1, 3)
    return images[..., :3]


class Progress:
    """A library progress/cancel callback backed by ComfyUI's ProgressBar.

    Call it as ``progress(done, total)``: it updates the node's bar and raises ComfyUI's interruption
    exception when the user pressed Cancel.
    """

    def __init__(self, total: int = 1):
        self.bar = comfy.utils.ProgressBar(max(int(total), 1))

    def __call__(self, done: int, total: int | None = None) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(int(done), int(total) if total is not None else None)


def check_interrupted(*_args, **_kwargs) -> None:
    """A library cancel callback: raises ComfyUI's interruption exception when the user pressed Cancel."""
    comfy.model_management.throw_exception_if_processing_interrupted()


def to_image(images: torch.Tensor) -> torch.Tensor:
    """A library image ``[F, H, W, 3]`` or ``[H, W, 3]`` in 0..1 as a ComfyUI IMAGE (float32, batched)."""
    images = images.detach().to(device=comfy.model_management.intermediate_device(), dtype=torch.float32)
    return (images[None] if images.ndim == 3 else images).clamp(0.0, 1.0).contiguous()


def to_mask(mask: torch.Tensor) -> torch.Tensor:
    """A library coverage ``[F, H, W]`` in 0..1 as a ComfyUI MASK."""
    return (
        mask.detach().to(device=comfy.model_management.intermediate_device(), dtype=torch.float32).clamp(0, 1)
    )
