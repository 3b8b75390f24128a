"""Fit SMPL-family motion to 2D keypoints (one static camera) or to 3D joint sequences.

Both fits optimise all frames and persons at once with Adam, on the device of the body model
(or ``device``). Only joints and face landmarks are evaluated while optimising: joints through
``kinematics.forward_kinematics`` on ``body_model.rest_joints(betas)`` (exactly what the body model
computes), face landmarks rigidly attached to the head joint (their offsets are read from one
rest-pose forward pass per stage).

Parametrisation: global orientation as the 6D representation (``roma.special_gramschmidt``),
body pose as rotation vectors (``roma.rotvec_to_rotmat``), translation in metres, betas shared
over time per person.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import roma
import torch

from amg_model.camera.camera import Camera
from amg_model.errors import MotionError
from amg_model.smpl.keypoints import COCO18_FIT_WEIGHTS, parse_pose_keypoints, smpl_to_coco18
from amg_model.smpl.kinematics import SMPL_PARENTS, forward_kinematics
from amg_model.smpl.motion import Motion, Person
from amg_model.smpl.tracking import fill_missing, person_scale, track_people

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

# World-from-fit-frame: the fit frame is y-up with the camera at its origin looking along -z;
# its OpenCV camera rotation flips y and z.
_CAM_FROM_FIT = torch.diag(torch.tensor([1.0, -1.0, -1.0]))

# COCO-18 joints that fix a person's global orientation and position (torso and face).
# Adam learning rates: stage 1; stage 2 orientation/translation, pose; stage 3 the same, betas.
_LR = [0.05, 0.03, 0.05, 0.015, 0.02, 0.05]
_TORSO_FACE = (0, 1, 2, 5, 8, 11, 14, 15, 16, 17)

# COCO-18 segments used to guess depth from pixel length: neck-hip midpoints, thighs, shins, upper arms.
_SEGMENTS = ((1, (8, 11)), (8, 9), (11, 12), (9, 10), (12, 13), (2, 3), (5, 6))


@dataclass
class FitWeights:
    """Weights of the fitting energy (each term is a mean, so weights do not depend on clip size).

    Attributes:
        data: 2D keypoint (or 3D joint) term; residuals in units of 1% of the person's size
            (or centimetres), under a Geman-McClure robust function.
        robust_sigma: Geman-McClure scale in the same units (residuals far above it count little).
        pose_prior: squared distance of each body-joint rotation vector from a neutral pose
            (arms lowered), scaled per joint (unobserved spine, neck, feet and hands count more).
        angle_limits: squared knee/elbow hyperextension and off-hinge bending (radians).
        betas: squared shape coefficients.
        joint_smooth: squared joint acceleration in centimetres per frame^2.
        rot_smooth: squared change of rotation matrices between frames (Frobenius).
    """

    data: float = 1.0
    robust_sigma: float = 10.0
    pose_prior: float = 2.0
    angle_limits: float = 100.0
    betas: float = 0.5
    joint_smooth: float = 0.02
    rot_smooth: float = 0.2


# Relative prior weight of each of the 23 body joints (SMPL order after the pelvis).
_PRIOR_JOINT = torch.tensor([
    0.3, 0.3, 3.0, 0.3, 0.3, 3.0, 1.0, 1.0, 3.0, 5.0, 5.0, 3.0, 2.0, 2.0, 1.0,
    0.3, 0.3, 0.3, 0.3, 1.0, 1.0, 5.0, 5.0,
])  # fmt: skip


def neutral_body_pose(num_body_joints: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """[Jb, 3] rotation vectors of a relaxed standing pose: arms lowered, elbows and knees slightly bent."""
    rv = torch.zeros(num_body_joints, 3, dtype=dtype, device=device)
    rv[15, 2], rv[16, 2] = -1.1, 1.1  # shoulders: arms down from the T-pose
    rv[17, 1], rv[18, 1] = -0.2, 0.2  # elbows: a little flexion
    rv[3, 0] = rv[4, 0] = 0.1  # knees
    return rv


def _angle_limit_penalty(pose_rv: torch.Tensor) -> torch.Tensor:
    """Mean squared knee/elbow hyperextension and off-hinge bending; pose_rv [..., Jb, 3]."""
    knees = pose_rv[..., 3:5, :]
    elbows = pose_rv[..., 17:19, :]
    hyper = torch.relu(-knees[..., 0]).square().sum(-1)  # knees flex about +x
    hyper = hyper + torch.relu(elbows[..., 0, 1]).square() + torch.relu(-elbows[..., 1, 1]).square()
    off_hinge = knees[..., 1:].square().sum((-1, -2)) + elbows[..., 2].square().sum(-1)
    return (hyper + 0.3 * off_hinge).mean()


class _PosedJoints:
    """Joints and face landmarks of a body model without computing vertices."""

    def __init__(self, body_model: torch.nn.Module):
        self.model = body_model
        self.num_body = int(body_model.num_body_joints)
        self.num_betas = int(body_model.num_betas)

    def rotmats(self, global_orient: torch.Tensor, body_pose: torch.Tensor) -> torch.Tensor:
        """[..., 24, 3, 3] local rotations of the SMPL skeleton (identity for absent hand joints)."""
        parts = [global_orient[..., None, :, :], body_pose]
        missing = 23 - body_pose.shape[-3]
        if missing > 0:
            eye = torch.eye(3, dtype=body_pose.dtype, device=body_pose.device)
            parts.append(eye.expand(*body_pose.shape[:-3], missing, 3, 3))
        return torch.cat(parts, dim=-3)

    def rest(self, betas: torch.Tensor) -> torch.Tensor:
        """[T, 24, 3] rest joints for betas [T, B]."""
        return self.model.rest_joints(betas)

    def head_offsets(self, betas: torch.Tensor) -> torch.Tensor:
        """[T, 5, 3] face landmarks relative to the head joint in the rest pose."""
        t = betas.shape[0]
        dtype, device = betas.dtype, betas.device
        eye = torch.eye(3, dtype=dtype, device=device)
        with torch.no_grad():
            out = self.model(
                betas=betas,
                global_orient=eye.expand(t, 3, 3),
                body_pose=eye.expand(t, self.num_body, 3, 3),
                transl=torch.zeros(t, 3, dtype=dtype, device=device),
            )
        return (out.face_landmarks - out.joints[:, 15:16]).detach()

    def __call__(
        self,
        rest: torch.Tensor,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        transl: torch.Tensor,
        head_offsets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Posed joints [T, F, 24, 3] and landmarks [T, F, 5, 3] (or None).

        Args: rest [T, 24, 3], global_orient [T, F, 3, 3], body_pose [T, F, Jb, 3, 3],
        transl [T, F, 3], head_offsets [T, 5, 3].
        """
        joints, transforms = forward_kinematics(self.rotmats(global_orient, body_pose), rest[:, None])
        joints = joints + transl[..., None, :]
        if head_offsets is None:
            return joints, None
        head_rot = transforms[..., 15, :3, :3]
        landmarks = head_offsets[:, None] @ head_rot.transpose(-1, -2) + joints[..., 15:16, :]
        return joints, landmarks


def _body_device(body_model: torch.nn.Module) -> torch.device | None:
    for t in list(body_model.parameters()) + list(body_model.buffers()):
        return t.device
    return None


def _prepare_model(body_model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if _body_device(body_model) not in (None, device):
        body_model = copy.deepcopy(body_model).to(device)
    return body_model


def _run_stage(
    params: list[dict],
    loss_fn: Callable[[], torch.Tensor],
    steps: int,
    done: int,
    total: int,
    progress: Progress | None,
) -> int:
    """Adam with a cosine learning-rate decay over one stage; returns the new iteration count."""
    if steps <= 0:
        return done
    opt = torch.optim.Adam(params)
    base = [g["lr"] for g in opt.param_groups]
    for i in range(steps):
        decay = 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * i / steps))
        for g, lr in zip(opt.param_groups, base, strict=True):
            g["lr"] = lr * decay
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        if i == 0 or i == steps - 1:
            logger.debug("step %d/%d: energy %.4g", i + 1, steps, float(loss.detach()))
        done += 1
        if progress is not None:
            progress(done, total)
    return done


def _geman_mcclure(sq: torch.Tensor, sigma: float) -> torch.Tensor:
    s2 = sigma * sigma
    return s2 * sq / (sq + s2)


def _smoothness(joints: torch.Tensor, rotmats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint acceleration (cm / frame^2, squared) and rotation change; joints [T, F, J, 3]."""
    zero = joints.new_zeros(())
    acc = zero
    if joints.shape[1] >= 3:
        acc = (100.0 * (joints[:, 2:] - 2 * joints[:, 1:-1] + joints[:, :-2])).square().sum(-1).mean()
    rot = zero
    if joints.shape[1] >= 2:
        for r in rotmats:
            rot = rot + (r[:, 1:] - r[:, :-1]).square().sum((-1, -2)).mean()
    return acc, rot


def _project(points: torch.Tensor, focal: float, cx: float, cy: float) -> torch.Tensor:
    """Fit-frame points [..., 3] -> pixels [..., 2] (camera at the origin looking along -z)."""
    z = (-points[..., 2]).clamp(min=0.05)
    u = focal * points[..., 0] / z + cx
    v = -focal * points[..., 1] / z + cy
    return torch.stack([u, v], dim=-1)


def _median_filter(x: np.ndarray, valid: np.ndarray, radius: int = 3) -> np.ndarray:
    """Per-frame median over a window of valid values; frames without any take the global median."""
    out = np.empty_like(x)
    glob = np.median(x[valid]) if valid.any() else np.nan
    for f in range(len(x)):
        lo, hi = max(0, f - radius), min(len(x), f + radius + 1)
        v = x[lo:hi][valid[lo:hi]]
        out[f] = np.median(v) if len(v) else glob
    return out


def _yaw_rotations(k: int, dtype, device) -> torch.Tensor:
    """[k, 3, 3] rotations about +y by 0, 360/k, ... degrees."""
    yaw = torch.arange(k, dtype=dtype, device=device) * (2 * math.pi / k)
    rv = torch.zeros(k, 3, dtype=dtype, device=device)
    rv[:, 1] = yaw
    return roma.rotvec_to_rotmat(rv)


def _choose_yaw(cost: torch.Tensor, switch: float) -> torch.Tensor:
    """Viterbi over yaw hypotheses; cost [T, F, K] -> chosen index [T, F]."""
    t_count, f_count, k = cost.shape
    yaw = torch.arange(k, dtype=cost.dtype, device=cost.device) * (2 * math.pi / k)
    trans = switch * (1 - torch.cos(yaw[:, None] - yaw[None, :]))  # [K, K]
    acc = cost[:, 0].clone()
    back = torch.zeros(t_count, f_count, k, dtype=torch.long, device=cost.device)
    for f in range(1, f_count):
        total = acc[:, :, None] + trans[None]  # [T, K_prev, K]
        acc, back[:, f] = total.min(dim=1)
        acc = acc + cost[:, f]
    idx = torch.zeros(t_count, f_count, dtype=torch.long, device=cost.device)
    idx[:, -1] = acc.argmin(-1)
    for f in range(f_count - 1, 0, -1):
        idx[:, f - 1] = back[:, f].gather(1, idx[:, f : f + 1])[:, 0]
    return idx


def _minimal_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] smallest rotation taking direction a [..., 3] to direction b [..., 3]."""
    a = a / a.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    b = b / b.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    cross = torch.linalg.cross(a, b)
    sin = cross.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(-1, keepdim=True)
    angle = torch.atan2(sin, cos)
    axis = cross / sin.clamp(min=1e-9)
    return roma.rotvec_to_rotmat(axis * angle)


def _world_alignment(
    joints: torch.Tensor, visible: torch.Tensor, ankle_height: torch.Tensor, max_tilt_deg: float = 40.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rigid map from the fit frame to the world: up from the persons' spines, ground at their feet.

    Args:
        joints: [T, F, 24, 3] fitted joints in the fit frame; visible [T, F]; ankle_height [T]
        (height of the ankle joint above the soles in the rest pose).

    Returns:
        R [3, 3] and t [3] with x_world = R x_fit + t.
    """
    v = joints[visible]  # [N, 24, 3]
    spine = v[:, 12] - v[:, 0]
    up = (spine / spine.norm(dim=-1, keepdim=True).clamp(min=1e-9)).mean(0)
    y = torch.tensor([0.0, 1.0, 0.0], dtype=joints.dtype, device=joints.device)
    tilt = math.degrees(math.acos(float((up / up.norm()).dot(y).clamp(-1, 1))))
    rot = _minimal_rotation(up, y) if tilt <= max_tilt_deg else torch.eye(3, dtype=joints.dtype)
    rot = rot.to(joints.device)
    w = joints @ rot.T
    soles = torch.minimum(w[..., 7, 1], w[..., 8, 1]) - ankle_height[:, None]
    ground = soles[visible].median()
    centre = w[..., 0, :][visible].mean(0)
    t = torch.stack([-centre[0], -ground, -centre[2]])
    return rot, t


def _to_world_person(
    rest_pelvis: torch.Tensor, orient: torch.Tensor, transl: torch.Tensor, rot: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply x -> rot x + t to a person: rest_pelvis [3], orient [F, 3, 3], transl [F, 3]."""
    new_orient = rot @ orient
    new_transl = (rest_pelvis + transl) @ rot.T + t - rest_pelvis
    return new_orient, new_transl


def _ankle_heights(body_model: torch.nn.Module, betas: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """[T] height of the lower ankle joint above the lowest vertex in the rest pose (0.08 m if unknown)."""
    t = betas.shape[0]
    eye = torch.eye(3, dtype=betas.dtype, device=betas.device)
    with torch.no_grad():
        out = body_model(
            betas=betas,
            global_orient=eye.expand(t, 3, 3),
            body_pose=eye.expand(t, int(body_model.num_body_joints), 3, 3),
            transl=torch.zeros(t, 3, dtype=betas.dtype, device=betas.device),
        )
    verts = getattr(out, "vertices", None)
    if verts is None or verts.shape[1] == 0:
        return torch.full((t,), 0.08, dtype=betas.dtype, device=betas.device)
    ankle = torch.minimum(rest[:, 7, 1], rest[:, 8, 1])
    return (ankle - verts[..., 1].min(dim=1).values).clamp(min=0.0)


def fit_keypoints(
    keypoints,
    body_model: torch.nn.Module,
    image_size: tuple[int, int] | None = None,
    fov_deg: float = 50.0,
    focal: float | None = None,
    min_confidence: float = 0.3,
    iterations: int = 300,
    fps: float = 30.0,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    weights: FitWeights | None = None,
    normalized: bool | None = None,
) -> tuple[Motion, Camera]:
    """Fit the motion of every tracked person to 2D keypoints seen by one static camera.

    People are tracked across frames (``tracking.track_people``); frames where a person is not
    detected are filled by interpolating their keypoints (held before the first and after the last
    detection, so the person stands still there) and count only weakly. Joints below
    ``min_confidence`` are ignored, the rest weighted by confidence. The COCO-18 neck is the
    midpoint of the SMPL shoulders; nose, eyes and ears are the body model's face landmarks; the
    OpenPose hips (lower and wider than SMPL hip joints) count less. Stages: global orientation and
    translation on torso and face (after choosing each person's facing among 8 directions), then
    body pose, then everything including shape; smoothness and pose priors act throughout.

    Args:
        keypoints: POSE_KEYPOINT frames (list of dicts, pixels or normalised, see
            ``keypoints.parse_pose_keypoints``) or a tensor [F, P, 18, 3] in pixels.
        body_model: a ``BodyModel`` (``rest_joints``, ``forward`` giving joints and face landmarks).
        image_size: (W, H) in pixels; by default the frames' canvas size.
        fov_deg: vertical field of view of the camera, used unless ``focal`` (pixels) is given.
        min_confidence: keypoints below this confidence are ignored.
        iterations: Adam steps in total over the three stages.
        fps: frame rate stored in the Motion.
        device: where to optimise; by default the body model's device (else the keypoints').
        progress: called as ``progress(done, total)`` after every step; raise in it to cancel.
        weights: energy weights (``FitWeights``).
        normalized: force the keypoint coordinate interpretation (pixels or 0..1).

    Returns:
        Motion with one person per track (names "person0", ...; all frames) in world coordinates
        (y-up, metres, ground y = 0 at the people's feet, origin below their mean position), and
        the static Camera [F] with the given field of view that sees it (OpenCV convention).
    """
    w = weights or FitWeights()
    kp, (width, height) = parse_pose_keypoints(keypoints, image_size, normalized)
    if device is None:
        device = _body_device(body_model) or (
            keypoints.device if isinstance(keypoints, torch.Tensor) else "cpu"
        )
    device = torch.device(device)
    body_model = _prepare_model(body_model, device)
    dtype = torch.float32
    if focal is None:
        if not 1.0 < fov_deg < 179.0:
            raise MotionError(f"Field of view {fov_deg} degrees is out of range; use 1 to 179.")
        focal = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    elif not focal > 0:
        raise MotionError(f"Focal length {focal} is not positive; give it in pixels.")
    focal = float(focal)
    cx, cy = width / 2.0, height / 2.0

    tracks = track_people(kp, min_confidence=min_confidence)
    filled = fill_missing(tracks)
    obs = filled.keypoints.permute(1, 0, 2, 3).to(device=device, dtype=dtype)  # [T, F, 18, 3]
    visible = tracks.visible.T.to(device)  # [T, F]
    num_tracks, num_frames = visible.shape
    if not (obs[..., 2] > 0).any(dim=-1).all():
        # A track with a joint-less frame cannot happen after filling; guard anyway.
        raise MotionError("Keypoints: a tracked person has frames without any usable joint.")

    kp_np = tracks.keypoints.permute(1, 0, 2, 3).cpu().numpy()
    scale = torch.tensor(
        [
            np.median([person_scale(kp_np[t, f, :, :2], kp_np[t, f, :, 2]) for f in range(num_frames)
                       if tracks.visible[f, t]])
            for t in range(num_tracks)
        ],
        dtype=dtype, device=device,
    )  # fmt: skip
    conf_w = obs[..., 2] * torch.tensor(COCO18_FIT_WEIGHTS, dtype=dtype, device=device)
    # Residuals in units of 1% of each person's size.
    res_scale = (0.01 * scale)[:, None, None]

    model = _PosedJoints(body_model)
    num_body = model.num_body
    betas = torch.zeros(num_tracks, model.num_betas, dtype=dtype, device=device)
    rest = model.rest(betas).detach()
    offsets = model.head_offsets(betas)
    neutral = neutral_body_pose(num_body, dtype, device)
    neutral_rot = roma.rotvec_to_rotmat(neutral)

    # Rest (neutral-pose) COCO points, body frame with the pelvis at the origin: [T, 18, 3].
    eye = torch.eye(3, dtype=dtype, device=device)
    j0, lm0 = model(rest, eye.expand(num_tracks, 1, 3, 3), neutral_rot.expand(num_tracks, 1, num_body, 3, 3),
                    torch.zeros(num_tracks, 1, 3, dtype=dtype, device=device), offsets)  # fmt: skip
    coco0 = (smpl_to_coco18(j0, lm0) - j0[..., :1, :])[:, 0]

    # Depth from pixel length of the least foreshortened segment: z = f * L / l_px.
    def seg_points(x: torch.Tensor, idx) -> torch.Tensor:
        return x[..., list(idx), :].mean(-2) if isinstance(idx, tuple) else x[..., idx, :]

    z_est = torch.full((num_tracks, num_frames), float("inf"), dtype=dtype, device=device)
    for a, b in _SEGMENTS:
        metric = (seg_points(coco0, a) - seg_points(coco0, b)).norm(dim=-1)  # [T]
        pa, pb = seg_points(obs[..., :2], a), seg_points(obs[..., :2], b)
        ca = obs[..., list(a) if isinstance(a, tuple) else [a], 2].min(-1).values
        cb = obs[..., list(b) if isinstance(b, tuple) else [b], 2].min(-1).values
        px = (pa - pb).norm(dim=-1)
        ok = (ca > 0) & (cb > 0) & (px > 2.0)
        z = torch.where(ok, focal * metric[:, None] / px.clamp(min=1e-3), torch.inf)
        z_est = torch.minimum(z_est, z)
    z_np = z_est.cpu().numpy()
    depth = np.stack([_median_filter(z_np[t], np.isfinite(z_np[t])) for t in range(num_tracks)])
    depth = np.where(np.isfinite(depth), depth, 4.0)
    depth_t = torch.from_numpy(depth).to(device=device, dtype=dtype).clamp(0.5, 200.0)

    # Pelvis position from the weighted 2D centroid of the torso joints, shifted by the rest offset.
    torso = [1, 2, 5, 8, 11]
    cw = obs[..., torso, 2]
    cw_sum = cw.sum(-1, keepdim=True)
    anyw = (cw_sum > 0).float()
    allw = obs[..., 2]
    centre2d = torch.where(
        anyw > 0,
        (obs[..., torso, :2] * cw[..., None]).sum(-2) / cw_sum.clamp(min=1e-9),
        (obs[..., :2] * allw[..., None]).sum(-2) / allw.sum(-1, keepdim=True).clamp(min=1e-9),
    )
    centre_body = coco0[:, torso].mean(-2)  # [T, 3] torso centre relative to the pelvis
    ray = torch.stack([(centre2d[..., 0] - cx) / focal, -(centre2d[..., 1] - cy) / focal,
                       -torch.ones_like(depth_t)], dim=-1)  # fmt: skip
    centre3d = ray * depth_t[..., None]
    pelvis = centre3d - centre_body[:, None]

    # Facing: score 8 yaw hypotheses on torso and face (translation-free), then Viterbi over time.
    yaws = _yaw_rotations(8, dtype, device)  # [K, 3, 3]
    tf = list(_TORSO_FACE)
    turned = torch.einsum("kab,tjb->tkja", yaws, coco0[:, tf])  # [T, K, 10, 3]
    pts = pelvis[:, :, None, None, :] + turned[:, None]  # [T, F, K, 10, 3]
    uv = _project(pts, focal, cx, cy)
    wts = conf_w[:, :, None, tf]
    obs_uv = obs[:, :, None, tf, :2]
    wsum = wts.sum(-1, keepdim=True).clamp(min=1e-9)
    uv_c = uv - (uv * wts[..., None]).sum(-2, keepdim=True) / wsum[..., None]
    ob_c = obs_uv - (obs_uv * wts[..., None]).sum(-2, keepdim=True) / wsum[..., None]
    cost = ((uv_c - ob_c).square().sum(-1) * wts).sum(-1) / wsum[..., 0] / scale[:, None, None].square()
    choice = _choose_yaw(cost, switch=0.02)
    orient0 = yaws[choice]  # [T, F, 3, 3]

    orient6 = orient0[..., :2].clone().requires_grad_(True)
    pose_rv = neutral.expand(num_tracks, num_frames, num_body, 3).clone().requires_grad_(True)
    transl = (pelvis - rest[:, None, 0]).clone().requires_grad_(True)
    betas = betas.clone().requires_grad_(True)
    prior_w = _PRIOR_JOINT[:num_body].to(device=device, dtype=dtype)
    joint_mask = torch.ones(18, dtype=dtype, device=device)

    def energy() -> torch.Tensor:
        orient = roma.special_gramschmidt(orient6)
        pose = roma.rotvec_to_rotmat(pose_rv)
        rest_now = model.rest(betas)
        joints, landmarks = model(rest_now, orient, pose, transl, offsets)
        uv = _project(smpl_to_coco18(joints, landmarks), focal, cx, cy)
        sq = ((uv - obs[..., :2]) / res_scale[..., None]).square().sum(-1)
        data = (conf_w * joint_mask * _geman_mcclure(sq, w.robust_sigma)).mean()
        prior = ((pose_rv - neutral).square().sum(-1) * prior_w).mean()
        acc, rot = _smoothness(joints, [orient, pose])
        return (
            w.data * data + w.pose_prior * prior + w.angle_limits * _angle_limit_penalty(pose_rv)
            + w.betas * betas.square().mean() + w.joint_smooth * acc + w.rot_smooth * rot
        )  # fmt: skip

    iterations = max(int(iterations), 3)
    n1 = max(1, int(0.2 * iterations))
    n2 = max(1, int(0.4 * iterations))
    n3 = iterations - n1 - n2
    joint_mask[:] = 0.0
    joint_mask[tf] = 1.0
    done = _run_stage([{"params": [orient6], "lr": _LR[0]}, {"params": [transl], "lr": _LR[0]}],
                      energy, n1, 0, iterations, progress)  # fmt: skip
    joint_mask[:] = 1.0
    groups = [{"params": [orient6], "lr": _LR[1]}, {"params": [transl], "lr": _LR[1]},
              {"params": [pose_rv], "lr": _LR[2]}]  # fmt: skip
    done = _run_stage(groups, energy, n2, done, iterations, progress)
    offsets = model.head_offsets(betas.detach())
    groups = [{"params": [orient6], "lr": _LR[3]}, {"params": [transl], "lr": _LR[3]},
              {"params": [pose_rv], "lr": _LR[4]}]  # fmt: skip
    if model.num_betas > 0:
        groups.append({"params": [betas], "lr": _LR[5]})
    _run_stage(groups, energy, n3, done, iterations, progress)

    with torch.no_grad():
        betas_f = betas.detach()
        orient = roma.special_gramschmidt(orient6.detach())
        pose = roma.rotvec_to_rotmat(pose_rv.detach())
        rest_f = model.rest(betas_f)
        joints, landmarks = model(rest_f, orient, pose, transl.detach(), offsets)
        uv = _project(smpl_to_coco18(joints, landmarks), focal, cx, cy)
        seen = (tracks.keypoints.permute(1, 0, 2, 3)[..., 2] > 0).to(device)
        err = (uv - obs[..., :2]).norm(dim=-1)[seen]
        logger.info("Keypoint fit: %d persons, %d frames, mean reprojection error %.2f px.",
                    num_tracks, num_frames, float(err.mean()) if err.numel() else float("nan"))  # fmt: skip
        rot, t = _world_alignment(joints, visible, _ankle_heights(body_model, betas_f, rest_f))
        persons = []
        for i in range(num_tracks):
            go, tr = _to_world_person(rest_f[i, 0], orient[i], transl[i].detach(), rot, t)
            persons.append(Person(
                body_type=str(body_model.body_type), gender=str(getattr(body_model, "gender", "neutral")),
                betas=betas_f[i].clone(), global_orient=go, body_pose=pose[i].clone(), transl=tr,
                name=f"person{i}",
            ))  # fmt: skip
        w2c_fit = torch.eye(4, dtype=dtype, device=device)
        w2c_fit[:3, :3] = _CAM_FROM_FIT.to(device=device, dtype=dtype)
        world_from_fit = torch.eye(4, dtype=dtype, device=device)
        world_from_fit[:3, :3], world_from_fit[:3, 3] = rot, t
        w2c = w2c_fit @ torch.linalg.inv(world_from_fit)
        ones = torch.ones(num_frames, dtype=dtype, device=device)
        camera = Camera(
            fx=ones * focal,
            fy=ones * focal,
            cx=ones * cx,
            cy=ones * cy,
            width=width,
            height=height,
            w2c=w2c.expand(num_frames, 4, 4).clone(),
        )
    motion = Motion(persons=persons, fps=float(fps))
    motion.validate("keypoint fit")
    return motion, camera


SMPL22_PARENTS = SMPL_PARENTS[:22]


def _analytic_rotations(target: torch.Tensor, rest: torch.Tensor, num_joints: int) -> torch.Tensor:
    """World rotations [T, F, 24, 3, 3] that point every rest bone at the target joints.

    Joints with several children (pelvis, spine3) get the least-squares (Kabsch) rotation of their
    child offsets; joints with one child the smallest rotation of their bone (no twist); leaves
    inherit the parent's rotation. target [T, F, J, 3], rest [T, 24, 3].
    """
    children: dict[int, list[int]] = {}
    for j, p in enumerate(SMPL_PARENTS[:num_joints]):
        if p >= 0:
            children.setdefault(p, []).append(j)
    t_count, f_count = target.shape[:2]
    eye = torch.eye(3, dtype=target.dtype, device=target.device)
    world: list[torch.Tensor] = []
    for j in range(24):
        p = SMPL_PARENTS[j]
        parent_rot = eye.expand(t_count, f_count, 3, 3) if p < 0 else world[p]
        kids = children.get(j, []) if j < num_joints else []
        if len(kids) >= 2:
            src = (rest[:, kids] - rest[:, j : j + 1])[:, None].expand(t_count, f_count, -1, -1)
            dst = target[:, :, kids] - target[:, :, j : j + 1]
            rot = roma.special_procrustes(dst.transpose(-1, -2) @ src)
        elif len(kids) == 1:
            c = kids[0]
            bone = (rest[:, c] - rest[:, j])[:, None, :, None]
            d0 = (parent_rot @ bone)[..., 0]
            d1 = target[:, :, c] - target[:, :, j]
            rot = _minimal_rotation(d0, d1) @ parent_rot
        else:
            rot = parent_rot
        world.append(rot)
    return torch.stack(world, dim=2)


def fit_joints3d(
    joints: torch.Tensor,
    body_model: torch.nn.Module,
    joint_format: str = "smpl24",
    fps: float = 20.0,
    fit_betas: bool = True,
    iterations: int = 150,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    weights: FitWeights | None = None,
) -> Motion:
    """Fit body-model parameters to sequences of 3D joints.

    Rotations are first set analytically (bones aligned with the target bones), then pose,
    translation and (optionally) betas are refined jointly with Adam, with temporal smoothness.
    Joint rotations that the positions cannot determine (the twist of end bones, hands) stay
    near the neutral pose.

    Args:
        joints: [F, J, 3] one person or [P, F, J, 3] several, in metres, world y-up. J = 24 for
            ``"smpl24"`` (SMPL joint order) or 22 for ``"humanml3d22"`` (HumanML3D ``new_joints``:
            the first 22 SMPL joints of SMPL-H neutral bodies retargeted to one fixed skeleton,
            y-up, floor at y = 0, facing +z at the first frame; fit betas to absorb its bone lengths).
        body_model: a ``BodyModel``.
        joint_format: "smpl24" or "humanml3d22".
        fps: frame rate stored in the Motion (HumanML3D: 20).
        fit_betas: fit shape to the bone lengths (else betas stay zero).
        iterations: Adam steps.
        device, progress, weights: as for ``fit_keypoints``.

    Returns:
        Motion with one person per sequence ("person0", ...), in the joints' frame.
    """
    w = weights or FitWeights()
    expected = {"smpl24": 24, "humanml3d22": 22}
    if joint_format not in expected:
        raise MotionError(f"Joint format {joint_format!r} is unknown; use one of {sorted(expected)}.")
    if not isinstance(joints, torch.Tensor):
        joints = torch.as_tensor(np.asarray(joints, dtype=np.float32))
    num_j = expected[joint_format]
    if joints.ndim == 3:
        joints = joints[None]
    if joints.ndim != 4 or joints.shape[-2:] != (num_j, 3):
        raise MotionError(
            f"Joints have shape {tuple(joints.shape)}; {joint_format} expects [frames, {num_j}, 3] "
            f"or [persons, frames, {num_j}, 3]."
        )
    if joints.shape[1] == 0:
        raise MotionError("Joints have no frames; give at least one frame.")
    if not torch.isfinite(joints).all():
        raise MotionError("Joints contain NaN or infinite values; fill or drop those frames first.")
    if device is None:
        device = _body_device(body_model) or joints.device
    device = torch.device(device)
    body_model = _prepare_model(body_model, device)
    dtype = torch.float32
    target = joints.to(device=device, dtype=dtype)
    num_p, num_f = target.shape[:2]
    model = _PosedJoints(body_model)
    num_body = model.num_body
    iterations = max(int(iterations), 2)
    total = iterations + (iterations // 2 if fit_betas and model.num_betas else 0)
    done = 0

    betas = torch.zeros(num_p, model.num_betas, dtype=dtype, device=device, requires_grad=True)
    if fit_betas and model.num_betas:
        # Bone lengths first (cheap): match the mean target bone lengths.
        bones = [(j, p) for j, p in enumerate(SMPL_PARENTS[:num_j]) if p >= 0]
        ji, pi = [b[0] for b in bones], [b[1] for b in bones]
        want = (target[:, :, ji] - target[:, :, pi]).norm(dim=-1).mean(1)  # [P, nb]

        def bone_energy() -> torch.Tensor:
            r = model.rest(betas)
            have = (r[:, ji] - r[:, pi]).norm(dim=-1)
            return (100 * (have - want)).square().mean() + 0.01 * w.betas * betas.square().mean()

        done = _run_stage(
            [{"params": [betas], "lr": 0.1}], bone_energy, iterations // 2, done, total, progress
        )
    rest = model.rest(betas.detach())
    world = _analytic_rotations(target, rest, num_j)  # [P, F, 24, 3, 3]
    parents = torch.tensor(SMPL_PARENTS[1:], device=device)
    local = world[:, :, parents].transpose(-1, -2) @ world[:, :, 1:]  # [P, F, 23, 3, 3]
    neutral = neutral_body_pose(num_body, dtype, device)
    pose0 = roma.rotmat_to_rotvec(local[:, :, :num_body])
    if num_j < 24:
        # Wrists (and hands) have no children among the targets: start them neutral.
        pose0[:, :, 19:] = neutral[19:]
    orient6 = world[:, :, 0, :, :2].clone().requires_grad_(True)
    pose_rv = pose0.clone().requires_grad_(True)
    transl = (target[:, :, 0] - rest[:, None, 0]).clone().requires_grad_(True)
    prior_w = _PRIOR_JOINT[:num_body].to(device=device, dtype=dtype)

    def energy() -> torch.Tensor:
        orient = roma.special_gramschmidt(orient6)
        pose = roma.rotvec_to_rotmat(pose_rv)
        pred, _ = model(model.rest(betas), orient, pose, transl)
        sq = (100.0 * (pred[:, :, :num_j] - target)).square().sum(-1)
        data = _geman_mcclure(sq, w.robust_sigma).mean()
        prior = ((pose_rv - neutral).square().sum(-1) * prior_w).mean()
        acc, rot = _smoothness(pred, [orient, pose])
        return (
            w.data * data + 0.01 * w.pose_prior * prior + 0.1 * w.angle_limits * _angle_limit_penalty(pose_rv)
            + 0.1 * w.betas * betas.square().mean() + 0.1 * w.joint_smooth * acc + 0.1 * w.rot_smooth * rot
        )  # fmt: skip

    groups = [{"params": [orient6], "lr": 0.01}, {"params": [transl], "lr": 0.005},
              {"params": [pose_rv], "lr": 0.01}]  # fmt: skip
    if fit_betas and model.num_betas:
        groups.append({"params": [betas], "lr": 0.01})
    _run_stage(groups, energy, iterations, done, total, progress)

    with torch.no_grad():
        orient = roma.special_gramschmidt(orient6)
        pose = roma.rotvec_to_rotmat(pose_rv)
        pred, _ = model(model.rest(betas), orient, pose, transl)
        err = (pred[:, :, :num_j] - target).norm(dim=-1).mean()
        logger.info("Joint fit: %d persons, %d frames, MPJPE %.1f mm.", num_p, num_f, 1000 * float(err))
        persons = [
            Person(
                body_type=str(body_model.body_type), gender=str(getattr(body_model, "gender", "neutral")),
                betas=betas[i].detach().clone(), global_orient=orient[i].clone(), body_pose=pose[i].clone(),
                transl=transl[i].detach().clone(), name=f"person{i}",
            )
            for i in range(num_p)
        ]  # fmt: skip
    motion = Motion(persons=persons, fps=float(fps))
    motion.validate("joint fit")
    return motion
