"""CameraCtrl / RealEstate10K camera poses: pose txt files and ComfyUI CAMERACTRL_POSES rows.

Pose txt file (RealEstate10K, as read by CameraCtrl): the first line is the source video URL
(or any comment), then one line per frame of 19 space-separated numbers::

    timestamp fx fy cx cy 0 0 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3

- timestamp: microseconds into the source video;
- fx, fy, cx, cy: intrinsics normalised by the image size (fx, cx by width; fy, cy by height);
- two unused values, written as 0;
- the world-to-camera transform, 3 x 4, row-major, OpenCV camera frame (x right, y down,
  z forward), like ours.

CAMERACTRL_POSES (AnimateDiff-Evolved, reused by other packs) is the same 19-value layout as a
list of Python lists, one per frame. Current AnimateDiff-Evolved stores the original pose image
width and height in values 5 and 6 (its file loaders set 1280 x 720) and uses them to correct
the aspect ratio, centre-cropping like ``Camera.resized(..., fit="crop")``; older versions left
them 0. We write the image size there and read it when it is positive.

Conventions: the camera frame needs no conversion, but the worlds differ. RealEstate10K worlds
come from SLAM on each clip, and poses generated for CameraCtrl start at the identity: their world
axes follow the first camera, so world y points down and z forward (``world="y_down"``, the
default). Ours is y-up with the subject facing +z; ``y_down`` converts by rotating the world
180 degrees about x (y -> -y, z -> -z). RealEstate10K translations have no metric scale: ``scale``
multiplies them on reading (and divides on writing). To place such a trajectory in front of a
subject, anchor its first frame with ``compose.anchor_camera``. CameraCtrl models condition on
poses relative to the first frame, which no rigid change of world alters: ``world`` and
anchoring matter for where the avatars appear, not for what a CameraCtrl model sees (``scale``
does change it).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import torch

from amg_model.camera.camera import Camera
from amg_model.errors import CameraError

logger = logging.getLogger(__name__)

ROW_LENGTH = 19
DEFAULT_POSE_SIZE = (1280, 720)
"""Image size assumed for rows that do not carry one (AnimateDiff-Evolved's default)."""
WORLDS = ("y_down", "y_up")


def _world_flip(world: str, dtype: torch.dtype) -> torch.Tensor:
    """[3, 3] rotation from the foreign world to ours (its own inverse)."""
    if world == "y_down":
        return torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=dtype))
    if world == "y_up":
        return torch.eye(3, dtype=dtype)
    raise CameraError(f"pose world {world!r} is unknown; use one of {WORLDS}.")


def camera_from_cameractrl_rows(
    rows: Sequence[Sequence[float]],
    width: int | None = None,
    height: int | None = None,
    pose_size: tuple[int, int] | None = None,
    scale: float = 1.0,
    world: str = "y_down",
    source: str = "CAMERACTRL_POSES",
) -> Camera:
    """A camera from 19-value pose rows (CAMERACTRL_POSES or the lines of a pose txt file).

    Args:
        rows: F rows ``[t, fx, fy, cx, cy, w, h, w2c 3x4 row-major]``, intrinsics normalised.
        width, height: output image size in pixels; default the pose image size. Another aspect
            ratio is centre-cropped (CameraCtrl's convention).
        pose_size: (width, height) of the image the poses were normalised by; default values 5
            and 6 of the rows when positive, else DEFAULT_POSE_SIZE.
        scale: metres per pose unit (RealEstate10K is scale-free).
        world: "y_down" (RealEstate10K and CameraCtrl worlds) or "y_up" (already ours).
        source: name used in error messages.

    Returns:
        Camera over F frames, float64.
    """
    if len(rows) == 0:
        raise CameraError(f"{source} has no pose rows; give at least one frame.")
    bad = [i for i, r in enumerate(rows) if len(r) != ROW_LENGTH]
    if bad:
        raise CameraError(
            f"{source}: row {bad[0]} has {len(rows[bad[0]])} values; CameraCtrl rows have {ROW_LENGTH}."
        )
    try:
        data = torch.tensor([[float(v) for v in r] for r in rows], dtype=torch.float64)
    except (TypeError, ValueError) as exc:
        raise CameraError(f"{source} holds a value that is not a number ({exc}); fix the poses.") from exc
    if not torch.isfinite(data).all():
        raise CameraError(f"{source} contains NaN or infinite values; fix the poses.")
    if not (math.isfinite(scale) and scale > 0):
        raise CameraError(f"{source}: scale {scale} must be a positive number of metres per pose unit.")
    if pose_size is None:
        w0, h0 = float(data[0, 5]), float(data[0, 6])
        pose_size = (int(round(w0)), int(round(h0))) if w0 > 0 and h0 > 0 else DEFAULT_POSE_SIZE
    pw, ph = pose_size
    if pw <= 0 or ph <= 0:
        raise CameraError(f"{source}: pose image size {pw}x{ph} must be positive.")

    flip = _world_flip(world, torch.float64)
    f = data.shape[0]
    w2c = torch.eye(4, dtype=torch.float64).repeat(f, 1, 1)
    m = data[:, 7:].reshape(f, 3, 4)
    w2c[:, :3, :3] = m[:, :, :3] @ flip
    w2c[:, :3, 3] = m[:, :, 3] * scale
    cam = Camera(
        fx=data[:, 1] * pw, fy=data[:, 2] * ph, cx=data[:, 3] * pw, cy=data[:, 4] * ph,
        width=pw, height=ph, w2c=w2c,
    )  # fmt: skip
    cam.validate(source)
    if width is not None or height is not None:
        cam = cam.resized(width or pw, height or ph, fit="crop")
    return cam


def camera_to_cameractrl_rows(
    camera: Camera,
    scale: float = 1.0,
    world: str = "y_down",
    fps: float = 30.0,
    store_size: bool = True,
) -> list[list[float]]:
    """CAMERACTRL_POSES rows of a camera (the inverse of ``camera_from_cameractrl_rows``).

    Args:
        camera: the camera (F frames).
        scale: metres per pose unit; translations are divided by it.
        world: "y_down" (what CameraCtrl models expect) or "y_up".
        fps: frame rate for the timestamps (microseconds; CameraCtrl ignores them).
        store_size: write the image size into values 5 and 6 (AnimateDiff-Evolved reads it);
            False writes 0 and 0 as in RealEstate10K files.

    Returns:
        F lists of 19 floats.
    """
    camera.validate("camera")
    if not (math.isfinite(scale) and scale > 0):
        raise CameraError(f"CameraCtrl export: scale {scale} must be a positive number of metres per unit.")
    if not fps > 0:
        raise CameraError(f"CameraCtrl export: fps {fps} must be positive.")
    w2c = camera.w2c.detach().to("cpu", torch.float64)
    flip = _world_flip(world, torch.float64)
    m = torch.cat([w2c[:, :3, :3] @ flip, w2c[:, :3, 3:] / scale], dim=2)
    w, h = float(camera.width), float(camera.height)
    size = (w, h) if store_size else (0.0, 0.0)
    rows = []
    for i in range(camera.num_frames):
        intr = [
            float(camera.fx[i]) / w,
            float(camera.fy[i]) / h,
            float(camera.cx[i]) / w,
            float(camera.cy[i]) / h,
        ]
        rows.append([float(round(i * 1e6 / fps)), *intr, *size, *m[i].reshape(12).tolist()])
    return rows


def read_cameractrl_txt(
    path: str | os.PathLike,
    width: int | None = None,
    height: int | None = None,
    pose_size: tuple[int, int] | None = None,
    scale: float = 1.0,
    world: str = "y_down",
) -> Camera:
    """Read a CameraCtrl / RealEstate10K pose txt file (see the module docstring).

    The first line is skipped as the source URL unless it already holds 19 numbers; blank lines
    are ignored. Arguments as in ``camera_from_cameractrl_rows``.
    """
    name = os.path.basename(os.fspath(path))
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [ln.strip() for ln in fh.read().splitlines()]
    except OSError as exc:
        raise CameraError(f"{name} cannot be read ({exc.strerror}); check the path.") from exc
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        parts = line.split()
        try:
            values = [float(v) for v in parts]
        except ValueError as exc:
            if number == 1:
                logger.debug("%s: source line %r", name, line)
                continue
            raise CameraError(
                f"{name}: line {number} holds a value that is not a number; fix the file."
            ) from exc
        if len(values) != ROW_LENGTH:
            if number == 1:
                continue
            raise CameraError(
                f"{name}: line {number} has {len(values)} values; pose lines have {ROW_LENGTH}."
            )
        rows.append(values)
    return camera_from_cameractrl_rows(rows, width, height, pose_size, scale, world, source=name)


def write_cameractrl_txt(
    camera: Camera,
    path: str | os.PathLike,
    source_url: str = "https://example.invalid/amg-camera",
    scale: float = 1.0,
    world: str = "y_down",
    fps: float = 30.0,
) -> None:
    """Write a CameraCtrl / RealEstate10K pose txt file (values 5 and 6 written as 0).

    Args:
        camera: the camera; its intrinsics are normalised by its image size.
        path: output file.
        source_url: first line of the file (CameraCtrl skips it).
        scale, world, fps: as in ``camera_to_cameractrl_rows``.
    """
    rows = camera_to_cameractrl_rows(camera, scale=scale, world=world, fps=fps, store_size=False)
    lines = [source_url.replace("\n", " ")]
    for r in rows:
        lines.append(" ".join([str(int(r[0]))] + [repr(v) for v in r[1:]]))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
