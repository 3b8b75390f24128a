"""Keyframed cameras: a JSON description of poses at chosen frames, smoothly interpolated.

Schema (a dict, or the same as a JSON string)::

    {
      "frames": 48,                        optional: total frame count (default last keyframe + 1)
      "width": 512, "height": 512,         optional: image size in pixels (default 512 x 512)
      "fov_deg": 45,                       optional: vertical field of view of the first keyframe
      "easing": "linear",                  optional: default easing of every segment
      "position_interpolation": "catmull_rom",   or "linear"
      "rotation_interpolation": "squad",         or "slerp", or "look_at"
      "keyframes": [
        {"frame": 0,  "position": [0, 1.2, 3.5], "look_at": [0, 1, 0], "fov_deg": 45},
        {"frame": 24, "position": [3.5, 1.5, 0], "look_at": [0, 1, 0], "easing": "ease_in_out"},
        {"frame": 47, "position": [0, 2.5, -3], "rotation_deg": [180, -20, 0], "fov_deg": 35}
      ]
    }

Keyframe keys:
- ``frame`` (required): integer frame index >= 0; keyframes are strictly increasing.
- ``position`` (required): camera centre [x, y, z], world metres (y-up; a subject at the
  origin faces +z).
- one of ``look_at`` (a world point [x, y, z] the camera aims at, no roll) or ``rotation_deg``
  ([yaw, pitch, roll] in degrees: yaw 0 looks along -z, i.e. at a subject at the origin from
  its front, and positive yaw turns left (counter-clockwise seen from above); positive pitch
  looks up; positive roll turns the camera clockwise about its view axis, so the picture turns
  counter-clockwise).
- ``roll_deg`` (optional, with ``look_at``): roll as above, default 0.
- ``fov_deg`` (optional): vertical field of view; default the previous keyframe's.
- ``easing`` (optional): speed profile of the segment from this keyframe to the next, one of
  easing.EASINGS; default the top-level ``easing``.

Interpolation: positions follow a Catmull-Rom (cubic Hermite) spline through the keyframes, with
tangents scaled by the frame spacing; rotations follow a squad spline of the keyframe rotations
(smooth across keyframes; "slerp" is piecewise), or with "look_at" the aim point is splined like
the positions and the camera re-aimed every frame (every keyframe then needs ``look_at``).
Fields of view are interpolated linearly. Frames before the first keyframe and after the last
hold those poses. Every keyframe is reached exactly.
"""

from __future__ import annotations

import json
import math
from typing import Any

import roma
import torch

from amg_model.camera.camera import Camera, look_at_rotation
from amg_model.camera.easing import EASINGS, ease
from amg_model.camera.interpolation import (
    hermite,
    hermite_tangents,
    slerp_rotmat,
    squad_controls,
    squad_rotmat,
)
from amg_model.errors import CameraError

POSITION_INTERPOLATIONS = ("catmull_rom", "linear")
ROTATION_INTERPOLATIONS = ("squad", "slerp", "look_at")
_TOP_KEYS = {"frames", "width", "height", "fov_deg", "easing", "position_interpolation",
             "rotation_interpolation", "keyframes"}  # fmt: skip
_KEY_KEYS = {"frame", "position", "look_at", "rotation_deg", "roll_deg", "fov_deg", "easing"}
_SRC = "camera keyframes"

# Yaw 0, pitch 0, roll 0: camera x = world +x, y = world -y (down), z = world -z (forward).
_FRONT = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))


def _axis_rotation(axis: int, angle_rad: float) -> torch.Tensor:
    v = torch.zeros(3, dtype=torch.float64)
    v[axis] = angle_rad
    return roma.rotvec_to_rotmat(v)


def rotation_from_yaw_pitch_roll(yaw_deg: float, pitch_deg: float, roll_deg: float) -> torch.Tensor:
    """[3, 3] camera-to-world rotation from yaw, pitch, roll in degrees (see the module docstring)."""
    yaw = _axis_rotation(1, math.radians(yaw_deg))
    pitch = _axis_rotation(0, math.radians(pitch_deg))  # about camera x; + looks up since y is down
    roll = _axis_rotation(2, math.radians(roll_deg))  # about camera z (forward)
    return yaw @ _FRONT @ pitch @ roll


def _vec3(value: Any, where: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise CameraError(f"{_SRC}: {where} must be a list of 3 numbers, got {value!r}.")
    return [_number(v, where) for v in value]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CameraError(f"{_SRC}: {where} must be a finite number, got {value!r}.")
    return float(value)


def _choice(value: Any, options: tuple[str, ...], where: str) -> str:
    if value not in options:
        raise CameraError(f"{_SRC}: {where} is {value!r}; use one of {options}.")
    return value


def _parse(description: dict | str) -> dict[str, Any]:
    if isinstance(description, str):
        try:
            description = json.loads(description)
        except json.JSONDecodeError as exc:
            raise CameraError(
                f"{_SRC} are not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix the text."
            ) from exc
    if not isinstance(description, dict):
        raise CameraError(f"{_SRC} must be a JSON object with a 'keyframes' list.")
    unknown = set(description) - _TOP_KEYS
    if unknown:
        raise CameraError(f"{_SRC}: unknown keys {sorted(unknown)}; allowed are {sorted(_TOP_KEYS)}.")
    keys = description.get("keyframes")
    if not isinstance(keys, list) or not keys:
        raise CameraError(f"{_SRC} need a non-empty 'keyframes' list.")
    return description


def camera_from_keyframes(
    description: dict | str,
    frames: int | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Camera:
    """A camera interpolated through keyframes (schema in the module docstring).

    Args:
        description: the keyframe description, a dict or a JSON string.
        frames: total frame count F; overrides the description's ``frames``.
        width, height: image size in pixels; override the description's.

    Returns:
        Camera over F frames (float32).
    """
    desc = _parse(description)
    default_easing = _choice(desc.get("easing", "linear"), EASINGS, "easing")
    pos_mode = _choice(desc.get("position_interpolation", "catmull_rom"), POSITION_INTERPOLATIONS,
                       "position_interpolation")  # fmt: skip
    rot_mode = _choice(desc.get("rotation_interpolation", "squad"), ROTATION_INTERPOLATIONS,
                       "rotation_interpolation")  # fmt: skip
    fov = _number(desc.get("fov_deg", 45.0), "fov_deg")

    times, positions, aims, rotations, fovs, rolls, easings = [], [], [], [], [], [], []
    for i, key in enumerate(desc["keyframes"]):
        where = f"keyframe {i}"
        if not isinstance(key, dict):
            raise CameraError(f"{_SRC}: {where} must be an object with 'frame' and 'position'.")
        unknown = set(key) - _KEY_KEYS
        if unknown:
            raise CameraError(
                f"{_SRC}: {where} has unknown keys {sorted(unknown)}; allowed are {sorted(_KEY_KEYS)}."
            )
        for required in ("frame", "position"):
            if required not in key:
                raise CameraError(f"{_SRC}: {where} lacks {required!r}.")
        frame = key["frame"]
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise CameraError(f"{_SRC}: {where} has frame {frame!r}; use an integer >= 0.")
        where = f"keyframe {i} (frame {frame})"
        if times and frame <= times[-1]:
            problem = "repeats" if frame == times[-1] else "comes before"
            raise CameraError(
                f"{_SRC}: {where} {problem} frame {times[-1]}; list keyframes by increasing frame."
            )
        if ("look_at" in key) == ("rotation_deg" in key):
            raise CameraError(f"{_SRC}: {where} needs exactly one of 'look_at' or 'rotation_deg'.")
        pos = torch.tensor(_vec3(key["position"], f"{where} position"), dtype=torch.float64)
        roll = _number(key.get("roll_deg", 0.0), f"{where} roll_deg")
        if "look_at" in key:
            aim = torch.tensor(_vec3(key["look_at"], f"{where} look_at"), dtype=torch.float64)
            try:
                rot = look_at_rotation(pos[None], aim[None])[0]
            except CameraError as exc:
                raise CameraError(f"{_SRC}: {where}: {exc}") from exc
            rot = rot @ _axis_rotation(2, math.radians(roll))
            aims.append(aim)
        else:
            if "roll_deg" in key:
                raise CameraError(f"{_SRC}: {where} gives roll twice; put it in rotation_deg only.")
            rot = rotation_from_yaw_pitch_roll(*_vec3(key["rotation_deg"], f"{where} rotation_deg"))
            aims.append(None)
        fov = _number(key.get("fov_deg", fov), f"{where} fov_deg")
        if not 0.0 < fov < 180.0:
            raise CameraError(f"{_SRC}: {where} has fov_deg {fov}; use a value between 0 and 180.")
        times.append(frame)
        positions.append(pos)
        rotations.append(rot)
        rolls.append(roll)
        fovs.append(fov)
        easings.append(_choice(key.get("easing", default_easing), EASINGS, f"{where} easing"))

    if rot_mode == "look_at" and any(a is None for a in aims):
        raise CameraError(f"{_SRC}: rotation_interpolation 'look_at' needs 'look_at' in every keyframe.")
    total = frames if frames is not None else desc.get("frames", times[-1] + 1)
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise CameraError(f"{_SRC}: frames is {total!r}; use an integer >= 1.")
    if times[-1] >= total:
        raise CameraError(f"{_SRC}: keyframe at frame {times[-1]} is beyond the {total} frames; add frames.")
    width = int(width if width is not None else _number(desc.get("width", 512), "width"))
    height = int(height if height is not None else _number(desc.get("height", 512), "height"))

    kt = torch.tensor(times, dtype=torch.float64)
    kp = torch.stack(positions)
    kr = torch.stack(rotations)
    kf = torch.tensor(fovs, dtype=torch.float64)

    f = torch.arange(total, dtype=torch.float64)
    seg = (torch.searchsorted(kt, f, right=True) - 1).clamp(0, max(len(times) - 2, 0))
    if len(times) == 1:
        u = torch.zeros(total, dtype=torch.float64)
        nxt = seg
    else:
        nxt = seg + 1
        u = ((f - kt[seg]) / (kt[nxt] - kt[seg])).clamp(0.0, 1.0)
        for i, name in enumerate(easings[:-1]):
            mask = seg == i
            u[mask] = ease(u[mask], name)

    def spline(points: torch.Tensor) -> torch.Tensor:
        if pos_mode == "linear" or len(times) == 1:
            return torch.lerp(points[seg], points[nxt], u[:, None])
        tangents = hermite_tangents(kt, points)
        return hermite(points[seg], points[nxt], tangents[seg], tangents[nxt], kt[nxt] - kt[seg], u)

    pos = spline(kp)
    if rot_mode == "look_at":
        aim = spline(torch.stack(aims))
        roll = torch.lerp(torch.tensor(rolls, dtype=torch.float64)[seg],
                          torch.tensor(rolls, dtype=torch.float64)[nxt], u)  # fmt: skip
        try:
            rot = look_at_rotation(pos, aim)
        except CameraError as exc:
            raise CameraError(
                f"{_SRC}: the interpolated camera meets its aim point ({exc}); space them."
            ) from exc
        axis = torch.zeros(total, 3, dtype=torch.float64)
        axis[:, 2] = torch.deg2rad(roll)
        rot = rot @ roma.rotvec_to_rotmat(axis)
    elif rot_mode == "slerp":
        rot = slerp_rotmat(kr[seg], kr[nxt], u)
    else:
        controls = squad_controls(kr)
        rot = squad_rotmat(kr[seg], kr[nxt], controls[seg], controls[nxt], u)
    fov_f = torch.lerp(kf[seg], kf[nxt], u)

    # Land exactly on the keyframes (the splines do up to rounding).
    idx = torch.tensor(times)
    pos[idx], rot[idx], fov_f[idx] = kp, kr, kf
    cam = Camera.from_pose(rot, pos, fov_f, width, height).to(dtype=torch.float32)
    cam.validate(_SRC)
    return cam
