"""Camera presets: named camera moves that film a subject (static, orbit, dolly, pan, zoom, ...).

Every preset starts from the same framing: the camera stands ``distance`` metres from the
target at ``height`` metres above the ground, at azimuth ``angle_deg`` around the target
(0 = in front of a subject that faces +z, i.e. the camera on the +z side looking along -z;
90 = on the subject's left, the +x side), and looks at the target. The preset then moves the
camera over ``frames`` frames, reaching the full ``amount`` on the last frame; ``easing``
shapes the speed. A target given per frame ([F, 3], e.g. ``subject_center`` of a walking
person) is followed: the camera keeps its horizontal offset from the target.

| preset     | moves                                               | amount (default)  | direction     |
|------------|-----------------------------------------------------|-------------------|---------------|
| static     | nothing                                             | unused            | unused        |
| orbit      | circles the target, keeps its distance, aims at it  | degrees (90)      | right / left  |
| dolly      | along its view axis, orientation kept               | metres (1.5)      | in / out      |
| truck      | sideways (camera x axis), orientation kept          | metres (1.0)      | right / left  |
| pedestal   | vertically (world y), orientation kept              | metres (0.5)      | up / down     |
| pan        | turns about the vertical axis through the camera    | degrees (30)      | right / left  |
| tilt       | turns about its horizontal (x) axis in place        | degrees (20)      | up / down     |
| zoom       | focal length only (multiplied by amount), no motion | factor (1.5)      | in / out      |
| crane      | rises (or sinks) while aiming at the target         | metres (1.0)      | up / down     |
| arc        | orbit combined with a rise of ``rise`` metres       | degrees (90)      | right / left  |
| dolly_zoom | dolly while zooming so the target keeps its size    | metres (1.5)      | in / out      |

"right" means the camera moves (or turns) towards its own right as seen in the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import roma
import torch

from amg_model.camera.camera import Camera, focal_from_fov, look_at_rotation, w2c_from_pose
from amg_model.camera.easing import progress
from amg_model.errors import CameraError

PRESET_NAMES = (
    "static", "orbit", "dolly", "truck", "pedestal", "pan", "tilt", "zoom", "crane", "arc", "dolly_zoom",
)  # fmt: skip

PRESET_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "static": ("none",),
    "orbit": ("right", "left"),
    "dolly": ("in", "out"),
    "truck": ("right", "left"),
    "pedestal": ("up", "down"),
    "pan": ("right", "left"),
    "tilt": ("up", "down"),
    "zoom": ("in", "out"),
    "crane": ("up", "down"),
    "arc": ("right", "left"),
    "dolly_zoom": ("in", "out"),
}
"""Accepted directions per preset; the first one is the default."""

PRESET_AMOUNTS: dict[str, float] = {
    "static": 0.0, "orbit": 90.0, "dolly": 1.5, "truck": 1.0, "pedestal": 0.5, "pan": 30.0, "tilt": 20.0,
    "zoom": 1.5, "crane": 1.0, "arc": 90.0, "dolly_zoom": 1.5,
}  # fmt: skip
"""Default ``amount`` per preset (degrees, metres or a zoom factor, see the module table)."""

DEFAULT_TARGET = (0.0, 1.0, 0.0)
MIN_TARGET_DISTANCE_M = 0.3
"""A camera closer than this to the target is inside the subject: the preset is refused."""


def subject_center(points: torch.Tensor, follow: bool = True) -> torch.Tensor:
    """Aim point for filming a subject: the centre of the bounding box of its points.

    Args:
        points: [F, N, 3] or [N, 3] world points in metres (e.g. joints or vertices of every
            person of a motion, concatenated along N).
        follow: True for one centre per frame (the camera follows the subject); False for the
            centre of the bounding box over all frames (a fixed aim).

    Returns:
        [F, 3] centres (F = 1 for [N, 3] points).
    """
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] == 0:
        raise CameraError(f"subject points have shape {tuple(points.shape)}; give [F, N, 3] world points.")
    if not torch.isfinite(points).all():
        raise CameraError("subject points contain NaN or infinite values; check the motion or body model.")
    if follow:
        return (points.amin(dim=1) + points.amax(dim=1)) / 2.0
    flat = points.reshape(-1, 3)
    centre = (flat.amin(dim=0) + flat.amax(dim=0)) / 2.0
    return centre.expand(points.shape[0], 3).clone()


def _yaw(angle_rad: torch.Tensor) -> torch.Tensor:
    """[F] angles -> [F, 3, 3] rotations about world +y (counter-clockwise seen from above)."""
    axis = torch.zeros(angle_rad.shape[0], 3, dtype=angle_rad.dtype, device=angle_rad.device)
    axis[:, 1] = angle_rad
    return roma.rotvec_to_rotmat(axis)


def _target_frames(target: torch.Tensor | Sequence[float] | None, frames: int) -> torch.Tensor:
    t = torch.as_tensor(DEFAULT_TARGET if target is None else target)
    t = t.to(torch.float32) if not t.is_floating_point() else t
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[-1] != 3:
        raise CameraError(f"preset target has shape {tuple(t.shape)}; give a point [3] or [F, 3].")
    if t.shape[0] == 1:
        t = t.expand(frames, 3)
    if t.shape[0] != frames:
        raise CameraError(f"preset target has {t.shape[0]} frames but the preset has {frames}; match them.")
    if not torch.isfinite(t).all():
        raise CameraError("preset target contains NaN or infinite values; check the subject centre.")
    return t


def camera_preset(
    name: str,
    frames: int = 16,
    target: torch.Tensor | Sequence[float] | None = None,
    distance: float = 3.5,
    height: float = 1.2,
    angle_deg: float = 0.0,
    fov_deg: float = 45.0,
    width: int = 512,
    height_px: int = 512,
    amount: float | None = None,
    direction: str | None = None,
    easing: str = "linear",
    rise: float = 1.0,
) -> Camera:
    """Build a named camera move (see the module table).

    Args:
        name: one of PRESET_NAMES.
        frames: number of frames F.
        target: aim point, [3] or [F, 3] world metres; default (0, 1, 0), the chest of a person
            standing at the origin. Use ``subject_center`` to film a motion.
        distance: metres from the camera to the target on the first frame.
        height: camera height above the ground (world y, metres) on the first frame.
        angle_deg: start azimuth around the target in degrees (0 = camera on the +z side).
        fov_deg: vertical field of view in degrees on the first frame.
        width, height_px: image size in pixels.
        amount: size of the move: degrees (orbit, pan, tilt, arc), metres (dolly, truck,
            pedestal, crane, dolly_zoom) or a focal-length factor >= 1 (zoom); default PRESET_AMOUNTS.
        direction: one of PRESET_DIRECTIONS[name]; default the first.
        easing: speed profile, one of easing.EASINGS.
        rise: metres the "arc" preset rises over the move (negative sinks); other presets ignore it.

    Returns:
        Camera over F frames, validated.
    """
    if name not in PRESET_NAMES:
        raise CameraError(f"camera preset {name!r} is unknown; use one of {PRESET_NAMES}.")
    directions = PRESET_DIRECTIONS[name]
    direction = directions[0] if direction is None else direction
    if direction not in directions and name != "static":
        raise CameraError(f"camera preset {name!r} has no direction {direction!r}; use one of {directions}.")
    amount = PRESET_AMOUNTS[name] if amount is None else float(amount)
    for label, value in (("amount", amount), ("distance", distance), ("height", height),
                         ("angle_deg", angle_deg), ("fov_deg", fov_deg), ("rise", rise)):  # fmt: skip
        if not math.isfinite(value):
            raise CameraError(f"camera preset {name!r}: {label} is {value}; give a finite number.")
    if frames < 1:
        raise CameraError(f"camera preset {name!r}: frames is {frames}; use at least 1.")
    if name == "zoom" and amount <= 0:
        raise CameraError(f"camera preset 'zoom': amount {amount} must be a positive focal-length factor.")
    if not 0.0 < fov_deg < 180.0:
        raise CameraError(f"camera preset {name!r}: fov_deg {fov_deg} must be between 0 and 180 degrees.")

    tgt = _target_frames(target, frames)
    dtype, device = tgt.dtype, tgt.device
    drop = height - float(tgt[0, 1])
    if distance <= abs(drop) or distance < MIN_TARGET_DISTANCE_M:
        raise CameraError(
            f"camera preset {name!r}: distance {distance} m cannot reach a camera height of {height} m from "
            f"a target at height {float(tgt[0, 1]):.2f} m; increase distance or bring height closer to it."
        )
    radius = math.sqrt(distance**2 - drop**2)
    a0 = math.radians(angle_deg)
    offset = torch.tensor([radius * math.sin(a0), 0.0, radius * math.cos(a0)], dtype=dtype, device=device)
    eye = tgt * torch.tensor([1.0, 0.0, 1.0], dtype=dtype, device=device) + offset
    eye[:, 1] = height
    sign = 1.0 if direction == directions[0] else -1.0
    s = progress(frames, easing, dtype).to(device)
    focal0 = float(focal_from_fov(fov_deg, float(height_px)))
    focal = torch.full((frames,), focal0, dtype=dtype, device=device)
    rot = look_at_rotation(eye, tgt)

    if name in ("orbit", "arc"):
        # The camera moves to its right when the azimuth grows (seen from above: counter-clockwise).
        yaw = _yaw(sign * s * math.radians(amount))
        eye = tgt + (yaw @ (eye - tgt)[..., None])[..., 0]
        if name == "arc":
            eye[:, 1] += s * rise
        rot = look_at_rotation(eye, tgt)
    elif name in ("dolly", "dolly_zoom"):
        base = (eye - tgt).norm(dim=-1)
        eye = eye + (sign * s * amount)[:, None] * rot[:, :, 2]
        if name == "dolly_zoom":
            focal = focal * (eye - tgt).norm(dim=-1) / base
    elif name == "truck":
        eye = eye + (sign * s * amount)[:, None] * rot[:, :, 0]
    elif name in ("pedestal", "crane"):
        eye = eye.clone()
        eye[:, 1] += sign * s * amount
        if name == "crane":
            rot = look_at_rotation(eye, tgt)
    elif name == "pan":
        # Turning right is clockwise seen from above: a negative yaw.
        rot = _yaw(-sign * s * math.radians(amount)) @ rot
    elif name == "tilt":
        axis = torch.zeros(frames, 3, dtype=dtype, device=device)
        # Rotating about the camera x axis by +angle turns the view up (camera y points down).
        axis[:, 0] = sign * s * math.radians(amount)
        rot = rot @ roma.rotvec_to_rotmat(axis)
    elif name == "zoom":
        factor = amount if sign > 0 else 1.0 / amount
        focal = focal * factor**s

    near = (eye - tgt).norm(dim=-1)
    if (near < MIN_TARGET_DISTANCE_M).any():
        raise CameraError(
            f"camera preset {name!r} brings the camera {float(near.min()):.2f} m from the target, inside the "
            f"subject; reduce amount or increase distance."
        )
    cam = Camera(
        fx=focal.clone(), fy=focal.clone(),
        cx=torch.full_like(focal, width / 2.0), cy=torch.full_like(focal, height_px / 2.0),
        width=int(width), height=int(height_px), w2c=w2c_from_pose(rot, eye),
    )  # fmt: skip
    cam.validate(f"camera preset {name!r}")
    return cam
