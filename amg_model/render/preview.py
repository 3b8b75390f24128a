"""A diagram of a shot: the camera path and the subjects seen from above and from the side.

Left panel: top view (world x to the right, world +z downwards, so a camera in front of a subject
that faces +z sits below it). Right panel: side view (world z to the right, world y up). Each
panel is scaled to fit the cameras and subjects; a metre grid (coarser for large scenes) is drawn.
Cameras are drawn as small frusta coloured by time (blue = first frame, red = last); the first is
ringed in white, the last in red; subjects as skeletons at their first, middle and last frames
plus the trail of their root.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from amg_model.camera.camera import Camera
from amg_model.errors import RenderError
from amg_model.smpl.kinematics import SMPL_PARENTS
from amg_model.smpl.motion import Motion

_PERSON_BGR = ((80, 200, 255), (120, 255, 140), (255, 160, 90), (200, 120, 255), (90, 230, 230))
_GRID_BGR = (52, 52, 52)
_AXIS_BGR = (90, 90, 90)


def render_scene_preview(
    motion_or_points: Motion | torch.Tensor | Sequence[torch.Tensor],
    camera: Camera,
    body_model=None,
    size: int = 512,
) -> torch.Tensor:
    """Draw the camera path and the subjects from above and from the side, side by side.

    Args:
        motion_or_points: a Motion (skeletons when ``body_model`` is given, else root trails), or
            subject points in world metres: [F, N, 3], [N, 3] or a list of those (one per subject).
            With 24 points per frame they are drawn as an SMPL skeleton.
        camera: the camera over its frames.
        body_model: optional BodyModel to pose the motion's persons for skeletons.
        size: output width in pixels (64..4096); the height is half of it.

    Returns:
        [size // 2, size, 3] float RGB image in 0..1.
    """
    if not 64 <= int(size) <= 4096:
        raise RenderError(f"Preview size {size} is out of range; use 64 to 4096 pixels.")
    subjects = _subject_points(motion_or_points, body_model)
    cam_pos = camera.positions().detach().double().cpu()
    rot = camera.w2c[:, :3, :3].transpose(1, 2).detach().double().cpu()  # c2w: columns x, y, z
    panel = int(size) // 2
    # Frustum rays through the image corners (camera frame), scaled to the scene.
    k = camera.num_frames
    fx, fy = camera.fx.double().cpu(), camera.fy.double().cpu()
    cx, cy = camera.cx.double().cpu(), camera.cy.double().cpu()
    corners = []
    for u, v in ((0, 0), (camera.width, 0), (camera.width, camera.height), (0, camera.height)):
        ray = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones(k, dtype=torch.float64)], -1)
        corners.append(ray)
    rays = torch.stack(corners, 1)  # [F, 4, 3] camera frame, z = 1

    every = torch.cat([cam_pos] + [p.reshape(-1, 3) for p in subjects])
    extent = float((every.amax(0) - every.amin(0)).max().clamp(min=1.0))
    frustum_len = 0.12 * extent
    tips = cam_pos[:, None] + frustum_len * (rays @ rot.transpose(1, 2))  # [F, 4, 3] world
    every = torch.cat([every, tips.reshape(-1, 3)])

    views = []
    for axes, flip, title in (((0, 2), (1, 1), "top"), ((2, 1), (1, -1), "side")):
        pts2 = every[:, list(axes)] * torch.tensor(flip, dtype=torch.float64)
        lo, hi = pts2.amin(0), pts2.amax(0)
        scale = 0.84 * panel / float((hi - lo).max().clamp(min=1e-6))
        centre = (lo + hi) / 2

        def to_px(p: torch.Tensor, axes=axes, flip=flip, scale=scale, centre=centre) -> np.ndarray:
            q = p[..., list(axes)] * torch.tensor(flip, dtype=torch.float64)
            return ((q - centre) * scale + panel / 2).numpy()

        img = np.zeros((panel, panel, 3), np.uint8)
        _draw_grid(img, centre, scale, panel)
        _draw_subjects(img, subjects, to_px, panel)
        _draw_cameras(img, cam_pos, tips, to_px, panel)
        cv2.putText(img, title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (200, 200, 200), 1, cv2.LINE_AA)
        views.append(img)
    both = np.concatenate(views, axis=1)
    cv2.line(both, (panel, 0), (panel, panel - 1), (110, 110, 110), 1)
    return torch.from_numpy(both[..., ::-1].copy()).float() / 255.0


def _subject_points(source, body_model) -> list[torch.Tensor]:
    """One [F, N, 3] (float64, CPU) point set per subject."""
    if isinstance(source, Motion):
        if not source.persons:
            raise RenderError("The motion has no persons to preview; add at least one person.")
        out = []
        for person in source.persons:
            if body_model is not None:
                with torch.no_grad():
                    joints = body_model.pose_person(person).joints
                out.append(joints.detach().double().cpu())
            else:
                out.append(person.transl.detach().double().cpu()[:, None])
        return out
    items = [source] if isinstance(source, torch.Tensor) else list(source)
    out = []
    for i, t in enumerate(items):
        if not isinstance(t, torch.Tensor) or t.shape[-1] != 3 or t.ndim not in (2, 3):
            raise RenderError(f"Preview subject {i} must be points [F, N, 3] or [N, 3] in metres.")
        t = t.detach().double().cpu()
        if not torch.isfinite(t).all():
            raise RenderError(f"Preview subject {i} contains NaN or infinite values.")
        out.append(t[None] if t.ndim == 2 else t)
    return out


def _pt(p) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _draw_grid(img, centre, scale, panel) -> None:
    """Metre grid (or coarser for big scenes) with the world axes through the origin brighter."""
    span = panel / scale
    step = 10 ** math.floor(math.log10(max(span / 4, 1e-3)))
    for mult in (1, 2, 5):
        if span / (step * mult) <= 12:
            step *= mult
            break
    half = span / 2
    for d in range(2):
        c = float(centre[d])
        start = math.floor((c - half) / step) * step
        v = start
        while v <= c + half + step:
            pos = (v - c) * scale + panel / 2
            colour = _AXIS_BGR if abs(v) < 1e-9 else _GRID_BGR
            p = int(round(pos))
            if d == 0:
                cv2.line(img, (p, 0), (p, panel - 1), colour, 1)
            else:
                cv2.line(img, (0, p), (panel - 1, p), colour, 1)
            v += step
    cv2.putText(img, f"grid {step:g} m", (6, panel - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (150, 150, 150), 1,
                cv2.LINE_AA)  # fmt: skip


def _draw_subjects(img, subjects, to_px, panel) -> None:
    """Root trails, skeletons at the first, middle and last frames, start and end dots."""
    for i, pts in enumerate(subjects):
        colour = _PERSON_BGR[i % len(_PERSON_BGR)]
        n_frames = pts.shape[0]
        root = to_px(pts[:, 0])
        trail = root.round().astype(np.int32).reshape(-1, 1, 2)
        if n_frames > 1:
            cv2.polylines(img, [trail], False, colour, 1, cv2.LINE_AA)
        keys = sorted({0, n_frames // 2, n_frames - 1})
        for j, f in enumerate(keys):
            fade = 0.45 + 0.55 * (j + 1) / len(keys)
            c = tuple(int(v * fade) for v in colour)
            p2 = to_px(pts[f])
            if pts.shape[1] == len(SMPL_PARENTS):
                for child, parent in enumerate(SMPL_PARENTS):
                    if parent >= 0:
                        cv2.line(img, _pt(p2[child]), _pt(p2[parent]), c, 1, cv2.LINE_AA)
            else:
                for q in p2:
                    cv2.circle(img, _pt(q), 2, c, -1, cv2.LINE_AA)
        cv2.circle(img, _pt(root[0]), 4, colour, 1, cv2.LINE_AA)
        cv2.circle(img, _pt(root[-1]), 4, colour, -1, cv2.LINE_AA)


def _draw_cameras(img, positions, tips, to_px, panel) -> None:
    """Frusta at up to 12 frames, the path, and the first / last camera ringed."""
    n_frames = positions.shape[0]
    centre = to_px(positions)
    tip = to_px(tips)  # [F, 4, 2]
    path = centre.round().astype(np.int32).reshape(-1, 1, 2)
    if n_frames > 1:
        cv2.polylines(img, [path], False, (150, 150, 150), 1, cv2.LINE_AA)
    shown = sorted(set(np.linspace(0, n_frames - 1, min(n_frames, 12)).round().astype(int).tolist()))
    for f in shown:
        t = f / max(n_frames - 1, 1)
        colour = (int(255 * (1 - t)), int(80 + 60 * (1 - abs(2 * t - 1))), int(255 * t))  # blue -> red
        c = _pt(centre[f])
        for q in tip[f]:
            cv2.line(img, c, _pt(q), colour, 1, cv2.LINE_AA)
        for a in range(4):
            cv2.line(img, _pt(tip[f, a]), _pt(tip[f, (a + 1) % 4]), colour, 1, cv2.LINE_AA)
        cv2.circle(img, c, 2, colour, -1, cv2.LINE_AA)
    cv2.circle(img, _pt(centre[0]), 6, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.circle(img, _pt(centre[-1]), 6, (60, 60, 255), 2, cv2.LINE_AA)
