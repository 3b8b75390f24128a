"""Camera: per-frame pinhole intrinsics and world-to-camera extrinsics (OpenCV convention).

Camera frame: x right, y down, z forward (into the scene). World frame: y-up, metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amg_model.errors import CameraError


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
