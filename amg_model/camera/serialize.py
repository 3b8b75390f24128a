"""Lossless JSON files of a Camera.

Format (``"format": "amg-camera"``, version 1)::

    {"format": "amg-camera", "version": 1, "dtype": "float32", "width": 512, "height": 512,
     "fx": [F floats], "fy": [...], "cx": [...], "cy": [...], "w2c": [F x 4 x 4 floats]}

Floats are written with Python's shortest round-trip representation, so loading gives back the
same tensor values bit for bit in the stored dtype. Conventions are the Camera's: pixels,
OpenCV camera frame, world y-up metres.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from amg_model.camera.camera import Camera
from amg_model.errors import CameraError

FORMAT = "amg-camera"
VERSION = 1
_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def camera_to_dict(camera: Camera) -> dict[str, Any]:
    """A JSON-ready dict of the camera (see the module docstring)."""
    camera.validate("camera")
    dtype = str(camera.w2c.dtype).removeprefix("torch.")
    data: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "dtype": dtype, "width": camera.width, "height": camera.height,
    }  # fmt: skip
    for name in ("fx", "fy", "cx", "cy", "w2c"):
        data[name] = getattr(camera, name).detach().cpu().tolist()
    return data


def camera_from_dict(data: dict[str, Any], source: str = "camera json") -> Camera:
    """The camera stored by ``camera_to_dict``; raises CameraError naming ``source`` on bad data."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CameraError(f"{source} is not an {FORMAT!r} file; save it with save_camera_json.")
    if data.get("version") != VERSION:
        raise CameraError(
            f"{source} has version {data.get('version')!r}; this library reads version {VERSION}."
        )
    missing = [k for k in ("width", "height", "fx", "fy", "cx", "cy", "w2c") if k not in data]
    if missing:
        raise CameraError(f"{source} lacks {missing}; save it again with save_camera_json.")
    dtype = _DTYPES.get(data.get("dtype", "float32"))
    if dtype is None:
        raise CameraError(f"{source} has dtype {data.get('dtype')!r}; use one of {sorted(_DTYPES)}.")
    try:
        fields = {k: torch.tensor(data[k], dtype=dtype) for k in ("fx", "fy", "cx", "cy", "w2c")}
        width, height = int(data["width"]), int(data["height"])
    except (TypeError, ValueError) as exc:
        raise CameraError(
            f"{source} holds values of the wrong type ({exc}); fix or re-save the file."
        ) from exc
    cam = Camera(width=width, height=height, **fields)
    cam.validate(source)
    return cam


def save_camera_json(camera: Camera, path: str | os.PathLike) -> None:
    """Write the camera to a JSON file."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(camera_to_dict(camera), fh)


def load_camera_json(path: str | os.PathLike) -> Camera:
    """Read a camera written by ``save_camera_json``."""
    name = os.path.basename(os.fspath(path))
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise CameraError(f"{name} cannot be read ({exc.strerror}); check the path.") from exc
    except json.JSONDecodeError as exc:
        raise CameraError(f"{name} is not valid JSON (line {exc.lineno}: {exc.msg}); fix the file.") from exc
    return camera_from_dict(data, source=name)
