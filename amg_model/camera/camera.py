"""Camera: per-frame pinhole intrinsics and world-to-camera extrinsics (OpenCV convention).

Camera frame: x right, y down, z forward (into the scene). World frame: y-up, metres.
Field of view (``fov_deg``) is the vertical one unless a function says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from amg_model.errors import CameraError

WORLD_UP = (0.0, 1.0, 0.0)
FIT_MODES = ("scale", "crop")
RIGID_TOLERANCE = 1e-3
"""Largest deviation of R^T R from the identity that ``validate`` accepts (float16 cameras pass)."""


def focal_from_fov(fov_deg: float | torch.Tensor, size_px: float) -> float | torch.Tensor:
    """Focal length in pixels giving a field of view of ``fov_deg`` degrees across ``size_px`` pixels."""
    if isinstance(fov_deg, torch.Tensor):
        return size_px / (2.0 * torch.tan(torch.deg2rad(fov_deg) / 2.0))
    return size_px / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def fov_from_focal(focal_px: float | torch.Tensor, size_px: float) -> float | torch.Tensor:
    """Field of view in degrees across ``size_px`` pixels for a focal length of ``focal_px`` pixels."""
    if isinstance(focal_px, torch.Tensor):
        return torch.rad2deg(2.0 * torch.atan(size_px / (2.0 * focal_px)))
    return math.degrees(2.0 * math.atan(size_px / (2.0 * focal_px)))


def _as_frames(x: torch.Tensor | Sequence[float], frames: int | None, name: str) -> torch.Tensor:
    """[3] or [F, 3] -> [F, 3] float tensor (float32 unless already floating)."""
    t = torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[-1] != 3:
        raise CameraError(f"{name} has shape {tuple(t.shape)}; give a point [3] or one per frame [F, 3].")
    if frames is not None and t.shape[0] == 1:
        t = t.expand(frames, 3)
    return t


def _broadcast_points(eye: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring [F1, 3] and [F2, 3] points to one frame count (one of them may have a single frame)."""
    target = target.to(eye)
    f1, f2 = eye.shape[0], target.shape[0]
    if f1 != f2 and 1 not in (f1, f2):
        raise CameraError(
            f"eye has {f1} frames and target {f2}; give one point or the same number of frames."
        )
    f = max(f1, f2)
    return eye.expand(f, 3), target.expand(f, 3)


def look_at_rotation(
    eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | Sequence[float] = WORLD_UP
) -> torch.Tensor:
    """Camera-to-world rotations of cameras at ``eye`` aimed at ``target``, without roll.

    Args:
        eye, target: [F, 3] world points (metres).
        up: [3] or [F, 3] world direction that appears as "up" in the image (default world +y).

    Returns:
        [F, 3, 3] rotations whose columns are the camera x (right), y (down) and z (forward)
        axes in world coordinates.
    """
    up = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    forward = target - eye
    dist = forward.norm(dim=-1, keepdim=True)
    if (dist < 1e-9).any():
        raise CameraError("look-at camera: the eye coincides with the target; move the camera away from it.")
    z = forward / dist
    x = torch.linalg.cross(z, up)
    xn = x.norm(dim=-1, keepdim=True)
    if (xn < 1e-6).any():
        raise CameraError(
            "look-at camera looks straight along the up direction; move the camera sideways or change `up`."
        )
    x = x / xn
    y = torch.linalg.cross(z, x)
    return torch.stack([x, y, z], dim=-1)


def w2c_from_pose(rotation_c2w: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """[F, 4, 4] world-to-camera transforms from camera-to-world rotations [F, 3, 3] and centres [F, 3]."""
    f = rotation_c2w.shape[0]
    w2c = torch.zeros(f, 4, 4, dtype=rotation_c2w.dtype, device=rotation_c2w.device)
    r = rotation_c2w.transpose(1, 2)
    w2c[:, :3, :3] = r
    w2c[:, :3, 3] = -(r @ position[..., None])[..., 0]
    w2c[:, 3, 3] = 1.0
    return w2c


def look_at(
    eye: torch.Tensor | Sequence[float],
    target: torch.Tensor | Sequence[float],
    up: torch.Tensor | Sequence[float] = WORLD_UP,
) -> torch.Tensor:
    """World-to-camera transforms of cameras at ``eye`` looking at ``target`` (OpenCV frame).

    The camera z axis points at the target, its y axis points down in the image, which is the
    world's down (-``up``) projected on the image plane; there is no roll.

    Args:
        eye, target: [3] or [F, 3] world points in metres (a single point is broadcast).
        up: [3] or [F, 3] world up direction, default +y.

    Returns:
        [F, 4, 4] w2c.
    """
    eye_t, target_t = _broadcast_points(_as_frames(eye, None, "eye"), _as_frames(target, None, "target"))
    return w2c_from_pose(look_at_rotation(eye_t, target_t, up), eye_t)


@dataclass
class Camera:
    """A camera over F frames.

    Attributes:
        fx, fy, cx, cy: [F] focal lengths and principal point, in pixels of a width x height image.
        width, height: image size in pixels.
        w2c: [F, 4, 4] world-to-camera rigid transforms (OpenCV camera frame).
    """

    fx: torch.Tensor
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: int
    height: int
    w2c: torch.Tensor

    @property
    def num_frames(self) -> int:
        return int(self.w2c.shape[0])

    @classmethod
    def from_pose(
        cls,
        rotation_c2w: torch.Tensor,
        position: torch.Tensor,
        fov_deg: float | torch.Tensor,
        width: int,
        height: int,
    ) -> Camera:
        """A camera from per-frame orientations and centres, square pixels, centred principal point.

        Args:
            rotation_c2w: [F, 3, 3] camera-to-world rotations (columns: camera x, y, z in world).
            position: [F, 3] camera centres in world metres.
            fov_deg: vertical field of view in degrees, a number or [F].
            width, height: image size in pixels.
        """
        f = rotation_c2w.shape[0]
        fov = torch.as_tensor(fov_deg, dtype=rotation_c2w.dtype, device=rotation_c2w.device).expand(f)
        if not torch.isfinite(fov).all() or (fov <= 0).any() or (fov >= 180).any():
            raise CameraError(f"field of view {fov.tolist()} degrees is invalid; use values in (0, 180).")
        fy = focal_from_fov(fov, float(height)).clone()
        fx = fy.clone()
        cx = torch.full_like(fx, width / 2.0)
        cy = torch.full_like(fx, height / 2.0)
        return cls(fx, fy, cx, cy, int(width), int(height), w2c_from_pose(rotation_c2w, position))

    @classmethod
    def from_look_at(
        cls,
        eye: torch.Tensor | Sequence[float],
        target: torch.Tensor | Sequence[float],
        fov_deg: float | torch.Tensor = 45.0,
        width: int = 512,
        height: int = 512,
        up: torch.Tensor | Sequence[float] = WORLD_UP,
        frames: int | None = None,
    ) -> Camera:
        """A camera at ``eye`` looking at ``target`` on every frame.

        Args:
            eye, target: [3] or [F, 3] world points in metres.
            fov_deg: vertical field of view in degrees, a number or [F].
            width, height: image size in pixels.
            up: world up direction (appears up in the image), default +y.
            frames: frame count when both points are single [3] points (default 1).
        """
        eye_t, target_t = _broadcast_points(
            _as_frames(eye, frames, "eye"), _as_frames(target, frames, "target")
        )
        cam = cls.from_pose(look_at_rotation(eye_t, target_t, up), eye_t, fov_deg, width, height)
        cam.validate("look-at camera")
        return cam

    @classmethod
    def static(
        cls,
        eye: torch.Tensor | Sequence[float] = (0.0, 1.2, 3.5),
        target: torch.Tensor | Sequence[float] = (0.0, 1.0, 0.0),
        fov_deg: float = 45.0,
        width: int = 512,
        height: int = 512,
        frames: int = 16,
    ) -> Camera:
        """A camera that does not move: ``frames`` copies of one look-at pose (defaults: 3.5 m in front)."""
        return cls.from_look_at(eye, target, fov_deg, width, height, frames=frames)

    def rotation_c2w(self) -> torch.Tensor:
        """[F, 3, 3] camera-to-world rotations (columns: camera x right, y down, z forward in world)."""
        return self.w2c[:, :3, :3].transpose(1, 2)

    def fov_deg(self, axis: str = "vertical") -> torch.Tensor:
        """[F] field of view in degrees, ``axis`` "vertical" (from fy, height) or "horizontal" (fx, width)."""
        if axis == "vertical":
            return fov_from_focal(self.fy, float(self.height))
        if axis == "horizontal":
            return fov_from_focal(self.fx, float(self.width))
        raise CameraError(f"field-of-view axis {axis!r} is unknown; use 'vertical' or 'horizontal'.")

    def resized(self, width: int, height: int, fit: str = "scale") -> Camera:
        """The same camera for an image of ``width`` x ``height`` pixels.

        Args:
            width, height: new image size in pixels.
            fit: "scale" scales x and y intrinsics separately (the whole view is kept; changing the
                aspect ratio stretches it); "crop" scales both by the larger factor and keeps the
                centre, so the view is centre-cropped and never stretched (CameraCtrl's convention).
        """
        if width <= 0 or height <= 0:
            raise CameraError(f"resize to {width}x{height}: both sizes must be positive.")
        sx, sy = width / self.width, height / self.height
        if fit == "scale":
            fx, fy = self.fx * sx, self.fy * sy
            cx, cy = self.cx * sx, self.cy * sy
        elif fit == "crop":
            s = max(sx, sy)
            fx, fy = self.fx * s, self.fy * s
            cx = (self.cx - self.width / 2.0) * s + width / 2.0
            cy = (self.cy - self.height / 2.0) * s + height / 2.0
        else:
            raise CameraError(f"resize fit {fit!r} is unknown; use one of {FIT_MODES}.")
        return Camera(fx, fy, cx, cy, int(width), int(height), self.w2c.clone())

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Camera:
        """A copy with every tensor on ``device`` and/or of floating ``dtype``."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype)

        fx, fy, cx, cy = (move(t) for t in (self.fx, self.fy, self.cx, self.cy))
        return Camera(fx, fy, cx, cy, self.width, self.height, move(self.w2c))

    def slice(self, frames: slice | Sequence[int] | torch.Tensor) -> Camera:
        """A camera over a subset of frames (a slice, a list of frame indices or an index tensor)."""
        if not isinstance(frames, slice):
            frames = torch.as_tensor(frames, dtype=torch.long, device=self.w2c.device)
            if frames.ndim != 1:
                raise CameraError("camera frame selection must be a slice or a flat list of frame indices.")
            n = self.num_frames
            if frames.numel() and (frames.min() < -n or frames.max() >= n):
                raise CameraError(f"camera frame selection {frames.tolist()} is outside 0..{n - 1}.")
        fx, fy, cx, cy = (t[frames].clone() for t in (self.fx, self.fy, self.cx, self.cy))
        return Camera(fx, fy, cx, cy, self.width, self.height, self.w2c[frames].clone())

    def intrinsics(self) -> torch.Tensor:
        """[F, 3, 3] intrinsic matrices K."""
        k = torch.zeros(self.num_frames, 3, 3, dtype=self.w2c.dtype, device=self.w2c.device)
        k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2] = self.fx, self.fy, self.cx, self.cy
        k[:, 2, 2] = 1.0
        return k

    def c2w(self) -> torch.Tensor:
        """[F, 4, 4] camera-to-world transforms."""
        return torch.linalg.inv(self.w2c)

    def positions(self) -> torch.Tensor:
        """[F, 3] camera centres in world coordinates."""
        r, t = self.w2c[:, :3, :3], self.w2c[:, :3, 3]
        return -(r.transpose(1, 2) @ t[..., None])[..., 0]

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """[F, N, 3] world points -> [F, N, 3] camera-frame points."""
        r, t = self.w2c[:, :3, :3], self.w2c[:, :3, 3]
        return points @ r.transpose(1, 2) + t[:, None, :]

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project world points.

        Args:
            points: [F, N, 3] world points.

        Returns:
            uv [F, N, 2] pixel coordinates (pixel centres at integer + 0.5), depth [F, N] (camera z).
        """
        pc = self.world_to_camera(points)
        z = pc[..., 2]
        zs = z.clamp(min=1e-6)
        u = self.fx[:, None] * pc[..., 0] / zs + self.cx[:, None]
        v = self.fy[:, None] * pc[..., 1] / zs + self.cy[:, None]
        return torch.stack([u, v], dim=-1), z

    def validate(self, source: str = "camera") -> None:
        """Raise CameraError naming ``source`` if the camera cannot be used."""
        f = self.num_frames
        if f == 0:
            raise CameraError(f"{source} has no frames.")
        if self.width <= 0 or self.height <= 0:
            raise CameraError(f"{source} has image size {self.width}x{self.height}; both must be positive.")
        if tuple(self.w2c.shape) != (f, 4, 4):
            raise CameraError(f"{source}: w2c has shape {tuple(self.w2c.shape)}, expected ({f}, 4, 4).")
        for name in ("fx", "fy", "cx", "cy"):
            t = getattr(self, name)
            if tuple(t.shape) != (f,):
                raise CameraError(f"{source}: {name} has shape {tuple(t.shape)}, expected ({f},).")
            if not torch.isfinite(t).all():
                raise CameraError(f"{source}: {name} contains NaN or infinite values.")
        if not torch.isfinite(self.w2c).all():
            raise CameraError(f"{source}: the extrinsics contain NaN or infinite values.")
        if (self.fx <= 0).any() or (self.fy <= 0).any():
            raise CameraError(f"{source}: focal lengths must be positive.")
        r = self.w2c[:, :3, :3].double()
        eye = torch.eye(3, dtype=r.dtype, device=r.device)
        bottom = self.w2c[:, 3].double() - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=r.dtype, device=r.device)
        deviation = max(float((r.transpose(1, 2) @ r - eye).abs().amax()), float(bottom.abs().amax()))
        rigid = deviation < RIGID_TOLERANCE
        if not rigid or (torch.linalg.det(r) <= 0).any():
            raise CameraError(
                f"{source}: w2c is not a rigid transform (rotation + translation); build it with look_at "
                "or w2c_from_pose."
            )
