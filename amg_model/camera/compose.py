"""Composing camera trajectories: resample, retime, reverse, anchor, concatenate with blending.

Poses are interpolated as camera centres (linear) and orientations (slerp on the shortest arc),
never by blending w2c matrices, so every result is a rigid camera. Intrinsics are linear.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from amg_model.camera.camera import Camera, w2c_from_pose
from amg_model.camera.easing import ease, progress
from amg_model.camera.interpolation import slerp_rotmat
from amg_model.errors import CameraError


def blend_cameras(a: Camera, b: Camera, weight: torch.Tensor) -> Camera:
    """Frame-by-frame blend of two cameras with the same frame count and image size.

    Args:
        a, b: cameras over F frames.
        weight: [F] blend weights, 0 gives ``a`` and 1 gives ``b``.
    """
    if a.num_frames != b.num_frames or (a.width, a.height) != (b.width, b.height):
        raise CameraError(
            f"cannot blend a {a.num_frames}-frame {a.width}x{a.height} camera with a "
            f"{b.num_frames}-frame {b.width}x{b.height} one; match frames and image size first."
        )
    w = weight.to(a.w2c)
    b_w2c = b.w2c.to(a.w2c)
    rot = slerp_rotmat(a.rotation_c2w(), b_w2c[:, :3, :3].transpose(1, 2), w)
    pb = -(b_w2c[:, :3, :3].transpose(1, 2) @ b_w2c[:, :3, 3:])[..., 0]
    pos = torch.lerp(a.positions(), pb, w[:, None])
    fx, fy, cx, cy = (torch.lerp(getattr(a, n), getattr(b, n).to(a.w2c), w) for n in ("fx", "fy", "cx", "cy"))
    return Camera(fx, fy, cx, cy, a.width, a.height, w2c_from_pose(rot, pos))


def sample_camera(camera: Camera, times: torch.Tensor) -> Camera:
    """The camera at fractional frame indices.

    Args:
        camera: camera over F frames.
        times: [T] frame indices in [0, F - 1] (clamped); integers give the frames exactly.

    Returns:
        Camera over T frames.
    """
    f = camera.num_frames
    t = times.to(camera.w2c).clamp(0, f - 1)
    i0 = t.floor().long().clamp(max=f - 1)
    i1 = (i0 + 1).clamp(max=f - 1)
    return blend_cameras(camera.slice(i0), camera.slice(i1), t - i0.to(t))


def retime_camera(camera: Camera, frames: int, easing: str = "linear") -> Camera:
    """Resample a trajectory to ``frames`` frames; first and last poses are kept exactly.

    Args:
        camera: camera over F frames.
        frames: new frame count (>= 1; 1 keeps the first frame).
        easing: time warp of the new frames over the old ones, one of easing.EASINGS
            ("ease_in_out" makes a constant-speed move start and stop gently).
    """
    camera.validate("camera to retime")
    if frames < 1:
        raise CameraError(f"retime to {frames} frames: use at least 1.")
    times = progress(frames, easing, camera.w2c.dtype).to(camera.w2c.device) * (camera.num_frames - 1)
    out = sample_camera(camera, times)
    out.w2c[0] = camera.w2c[0]
    if frames > 1:
        out.w2c[-1] = camera.w2c[-1]
    return out


def reverse_camera(camera: Camera) -> Camera:
    """The trajectory played backwards."""
    return camera.slice(torch.arange(camera.num_frames - 1, -1, -1))


def anchor_camera(camera: Camera, w2c: torch.Tensor | Camera) -> Camera:
    """Move a trajectory rigidly so that its first frame has a given pose; relative motion is kept.

    Use it to place a foreign trajectory (e.g. RealEstate10K, whose world is arbitrary) in front of
    the subject: anchor it to the first frame of a preset.

    Args:
        camera: camera over F frames.
        w2c: [4, 4] world-to-camera pose for frame 0, or a Camera whose last frame is used.
    """
    anchor = w2c.w2c[-1] if isinstance(w2c, Camera) else w2c
    if tuple(anchor.shape) != (4, 4):
        raise CameraError(f"anchor pose has shape {tuple(anchor.shape)}; give one [4, 4] w2c matrix.")
    anchor = anchor.to(camera.w2c)
    new_w2c = camera.w2c @ torch.linalg.inv(camera.w2c[0]) @ anchor
    out = Camera(camera.fx.clone(), camera.fy.clone(), camera.cx.clone(), camera.cy.clone(),
                 camera.width, camera.height, new_w2c)  # fmt: skip
    out.w2c[0] = anchor
    return out


def concat_cameras(cameras: Sequence[Camera], blend_frames: int = 0, continuous: bool = False) -> Camera:
    """Play trajectories one after another.

    Args:
        cameras: cameras with the same image size (resize them first).
        blend_frames: with 0, trajectories are simply joined (F = sum of frames). With B > 0,
            each seam overlaps the last B frames of one trajectory with the first B of the next
            and cross-fades the poses with a smoothstep weight (F = sum - B per seam).
        continuous: move each trajectory rigidly so that it starts where the previous one ended
            (``anchor_camera``), and drop its first frame, which would repeat that pose
            (F = sum - 1 per seam); for chaining relative moves such as pan then dolly.

    Returns:
        The joined camera.
    """
    if not cameras:
        raise CameraError("no cameras to concatenate; give at least one.")
    sizes = {(c.width, c.height) for c in cameras}
    if len(sizes) > 1:
        raise CameraError(
            f"cameras to concatenate have image sizes {sorted(sizes)}; resize them to one size."
        )
    if blend_frames < 0:
        raise CameraError(f"blend_frames {blend_frames} must be 0 or more.")
    out = cameras[0]
    for nxt in cameras[1:]:
        nxt = nxt.to(device=out.w2c.device, dtype=out.w2c.dtype)
        if continuous:
            nxt = anchor_camera(nxt, out)
            if nxt.num_frames == 1:
                continue
            nxt = nxt.slice(slice(1, None))
        b = blend_frames
        if b > min(out.num_frames, nxt.num_frames):
            raise CameraError(
                f"blend_frames {b} is longer than a trajectory ({out.num_frames} and {nxt.num_frames} "
                "frames); reduce it."
            )
        parts = [out.slice(slice(0, out.num_frames - b))]
        if b:
            w = ease(
                torch.arange(1, b + 1, dtype=out.w2c.dtype, device=out.w2c.device) / (b + 1), "ease_in_out"
            )
            parts.append(blend_cameras(out.slice(slice(out.num_frames - b, None)), nxt.slice(slice(0, b)), w))
        parts.append(nxt.slice(slice(b, None)))
        out = Camera(*(torch.cat([getattr(p, n) for p in parts]) for n in ("fx", "fy", "cx", "cy")),
                     out.width, out.height, torch.cat([p.w2c for p in parts]))  # fmt: skip
    return out
