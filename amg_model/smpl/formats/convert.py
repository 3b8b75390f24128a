"""Conversions shared by the motion readers: arrays to tensors, pose layouts, world re-orientation.

Every function takes ``source`` (the file name) so that its MotionError names the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import roma
import torch

from amg_model.errors import MotionError
from amg_model.smpl.mannequin import REST_PELVIS
from amg_model.smpl.motion import BODY_JOINTS, Person

DTYPE = torch.float32

# Rest position of the pelvis joint (J0) of each body model's template, metres, in its own frame.
# The exact value depends on the body model file and on betas (a few centimetres); it matters only
# when the whole posed body is rotated about a point (world re-orientation, yaw, mirror), because
# smplx rotates the body about J0 and then adds ``transl``. Pass the exact J0 of a loaded body model
# where it is known (``pelvis_rest=``); these defaults are the templates' mean-shape values.
PELVIS_REST = {
    "smpl": (-0.0018, -0.2233, 0.0282),
    "mannequin": REST_PELVIS,  # placed where an SMPL body rests (smpl.mannequin)
    "smplh": (-0.0018, -0.2233, 0.0282),
    "smplx": (0.0031, -0.3514, 0.0120),
}

# World re-orientations (x_ours = M @ x_theirs).
Z_UP_TO_Y_UP = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # -90 deg about x
OPENCV_TO_Y_UP = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # 180 deg about x


def to_tensor(value, name: str, source: str) -> torch.Tensor:
    """A float32 tensor from an array-like (numpy, torch, nested lists); MotionError if impossible."""
    try:
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu", DTYPE)
        else:
            arr = np.asarray(value)
            if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
                raise TypeError(f"dtype {arr.dtype}")
            t = torch.from_numpy(arr.astype(np.float32, copy=True))
    except (TypeError, ValueError) as err:
        raise MotionError(f"{source}: {name} is not a numeric array ({err}); check the file.") from None
    if not torch.isfinite(t).all():
        raise MotionError(f"{source}: {name} contains NaN or infinite values; clean or re-export the file.")
    return t


def to_str(value, default: str = "") -> str:
    """A plain string from str / bytes / 0-d or 1-element numpy arrays (as npz files store strings)."""
    if value is None:
        return default
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return default
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip()


def gender_of(value, source: str) -> str:
    """Normalise a gender label ('male', b'female', 'n', ...) to one of Person's genders."""
    text = to_str(value, "neutral").lower()
    for g in ("female", "male", "neutral"):  # 'female' first: it contains 'male'
        if text.startswith(g[0]) and (g in text or len(text) == 1):
            return g
    raise MotionError(f"{source}: gender {text!r} is not male, female or neutral; fix the gender entry.")


def rotations(t: torch.Tensor, joints: int | None, name: str, source: str) -> torch.Tensor:
    """Rotation matrices [F, J, 3, 3] from axis-angle [F, J*3] / [F, J, 3] or matrices [F, J, 3, 3].

    ``joints`` is the expected joint count J, or None to accept any. A single frame (no F) is
    accepted too. Matrices are re-orthonormalised (float error in files), never silently fixed
    when they are far from rotations.
    """
    if t.ndim == 0 or t.shape[0] == 0:
        raise MotionError(f"{source}: {name} is empty; the file holds no frames.")
    if t.ndim in (3, 4) and tuple(t.shape[-2:]) == (3, 3):
        if t.ndim == 3:  # [F, 3, 3] for one joint, else one frame [J, 3, 3]
            mats = t[:, None] if joints == 1 else t[None]
        else:
            mats = t
        err = (mats.transpose(-1, -2) @ mats - torch.eye(3)).abs().amax() if mats.numel() else 0.0
        if err > 1e-2:
            raise MotionError(f"{source}: {name} holds 3x3 matrices that are not rotations; check the file.")
        mats = roma.special_procrustes(mats)
    else:
        if t.ndim == 1:
            t = t[None]
        if t.ndim == 2:
            if t.shape[-1] % 3:
                raise MotionError(
                    f"{source}: {name} has {t.shape[-1]} values per frame, not a multiple of 3; "
                    "expected axis-angle triples."
                )
            t = t.reshape(t.shape[0], -1, 3)
        if t.ndim != 3 or t.shape[-1] != 3:
            raise MotionError(f"{source}: {name} has shape {tuple(t.shape)}; expected [F, J*3] or [F, J, 3].")
        mats = roma.rotvec_to_rotmat(t)
    if joints is not None and mats.shape[1] != joints:
        raise MotionError(
            f"{source}: {name} has {mats.shape[1]} joints per frame, expected {joints}; "
            "check the body type of the file."
        )
    return mats.to(DTYPE)


def vectors(t: torch.Tensor, width: int, name: str, source: str) -> torch.Tensor:
    """[F, width] from [F, width], [width] (one frame) or [F, 1, width]."""
    if t.ndim == 1:
        t = t[None]
    if t.ndim == 3 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 2 or t.shape[1] != width:
        raise MotionError(f"{source}: {name} has shape {tuple(t.shape)}; expected [F, {width}].")
    return t


def betas_vector(t: torch.Tensor, source: str) -> torch.Tensor:
    """One shape vector [B] from [B], [1, B] or per-frame [F, B] (averaged over frames)."""
    if t.ndim == 0:
        raise MotionError(f"{source}: betas is a single number; expected a vector of shape coefficients.")
    return t.reshape(-1, t.shape[-1]).mean(0) if t.ndim > 1 else t


def body_type_for(num_joints: int, requested: str | None, source: str, has_face: bool = False) -> str:
    """The body type of data whose body pose has ``num_joints`` joints.

    ``requested`` names the data's type when its joint count matches (smplh vs smplx, smpl); the
    mannequin is never a file's native type (readers convert to it with change_body_type).
    """
    if requested is not None and requested != "mannequin" and BODY_JOINTS.get(requested) == num_joints:
        return requested
    if num_joints == 23:
        return "smpl"
    if num_joints == 21:
        return "smplx" if has_face else "smplh"
    raise MotionError(
        f"{source}: body pose has {num_joints} joints; SMPL needs 23 and SMPL-H/SMPL-X need 21."
    )


def change_body_type(person: Person, body_type: str | None, pelvis_rest=None) -> Person:
    """The same motion for another body type, keeping the pelvis where it is in the world.

    23-joint poses lose their two hand joints on SMPL-H/X, 21-joint poses get identity hand
    joints on SMPL / the mannequin; hand, jaw and expression tensors are kept only for SMPL-H/X.
    ``transl`` is shifted by J0(source) - J0(target) (rest pelvis positions, PELVIS_REST;
    ``pelvis_rest`` overrides the source's), so e.g. an SMPL motion loaded for the mannequin
    stands where the SMPL body would.
    """
    if body_type is None or body_type == person.body_type:
        return person
    if body_type not in BODY_JOINTS:
        raise MotionError(f"motion: unknown body type {body_type!r}; use one of {sorted(BODY_JOINTS)}.")
    body = person.body_pose
    joints = BODY_JOINTS[body_type]
    if body.shape[1] > joints:
        body = body[:, :joints]
    elif body.shape[1] < joints:
        eye = torch.eye(3, dtype=body.dtype).expand(body.shape[0], joints - body.shape[1], 3, 3)
        body = torch.cat([body, eye], dim=1)
    shift = pelvis_rest_of(person.body_type, pelvis_rest) - pelvis_rest_of(body_type)
    extra = {}
    if body_type in ("smpl", "mannequin"):
        extra = {"left_hand_pose": None, "right_hand_pose": None, "jaw_pose": None, "expression": None}
    elif body_type == "smplh":
        extra = {"jaw_pose": None, "expression": None}
    return replace(
        person, body_type=body_type, body_pose=body, transl=person.transl + shift.to(person.transl), **extra
    )


def first_key(data: Mapping, names: Sequence[str]):
    """The value of the first key of ``names`` present in ``data`` (None if none is)."""
    for n in names:
        if n in data and data[n] is not None:
            return data[n]
    return None


def pelvis_rest_of(body_type: str, pelvis_rest=None) -> torch.Tensor:
    """The rest pelvis position [3] to use: the caller's, else the template default."""
    value = PELVIS_REST[body_type] if pelvis_rest is None else pelvis_rest
    return torch.as_tensor(value, dtype=DTYPE).reshape(3)


def transform_person(
    person: Person, rotation: torch.Tensor, offset: torch.Tensor | None = None, pelvis_rest=None
) -> Person:
    """Rigidly move the whole posed body: x -> rotation @ x + offset for every body point.

    smplx poses a body as x = R_g (x_rest - J0) + J0 + transl, so the exact new parameters are
    R_g' = rotation @ R_g and transl' = rotation @ (transl + J0) + offset - J0, with J0 the rest
    pelvis position (``pelvis_rest``, default PELVIS_REST[body_type]).

    Args:
        rotation: [3, 3] or per-frame [F, 3, 3] world rotation.
        offset: [3] or [F, 3] world translation, default zero.
    """
    j0 = pelvis_rest_of(person.body_type, pelvis_rest).to(person.transl)
    rotation = rotation.to(person.transl)
    orient = rotation @ person.global_orient
    transl = (rotation @ (person.transl + j0)[..., None])[..., 0] - j0
    if offset is not None:
        transl = transl + offset.to(transl)
    return replace(person, global_orient=orient, transl=transl)


def pose_from_mapping(data: Mapping, source: str, body_type: str | None = None) -> dict[str, torch.Tensor]:
    """Per-frame tensors of one person from SMPL-style keys (aliases accepted).

    Accepts either separate ``global_orient``/``body_pose`` (aliases ``root_orient``, ``pose_body``)
    or one packed ``poses``/``pose``/``smpl_poses``/``thetas`` array whose layout is read from its
    width: 72 (SMPL: root + 23), 66 (root + 21), 156 (SMPL-H: root + 21 + 2x15 hands),
    165 (SMPL-X: root + 21 + jaw + 2 eyes + 2x15 hands). Returns a dict with global_orient
    [F, 3, 3], body_pose [F, J, 3, 3], optional hands / jaw, and the body type.
    """
    out: dict = {}
    orient = first_key(data, ("global_orient", "root_orient", "global_pose", "smpl_root_orient"))
    body = first_key(data, ("body_pose", "pose_body", "smpl_body_pose"))
    packed = first_key(data, ("poses", "pose", "smpl_poses", "smpl_pose", "fullpose", "full_pose"))
    if body is not None:
        body_t = to_tensor(body, "body_pose", source)
        if orient is None and packed is None:
            raise MotionError(f"{source}: body_pose has no global_orient / root_orient beside it; add one.")
        if orient is None:
            orient_t = rotations(to_tensor(packed, "poses", source), None, "poses", source)[:, 0]
        else:
            orient_t = rotations(to_tensor(orient, "global_orient", source), 1, "global_orient", source)[:, 0]
        body_m = rotations(body_t, None, "body_pose", source)
        if body_m.shape[0] != orient_t.shape[0]:
            if orient_t.shape[0] == 1:
                orient_t = orient_t.expand(body_m.shape[0], 3, 3)
            else:
                raise MotionError(
                    f"{source}: global_orient has {orient_t.shape[0]} frames but body_pose has "
                    f"{body_m.shape[0]}; re-export the file."
                )
    elif packed is not None:
        mats = rotations(to_tensor(packed, "poses", source), None, "poses", source)
        n = mats.shape[1]
        layouts = {24: (23, 0, 0), 22: (21, 0, 0), 52: (21, 15, 0), 55: (21, 15, 3)}
        if n not in layouts:
            raise MotionError(
                f"{source}: poses has {n * 3} values per frame; expected 72 (SMPL), 66, 156 (SMPL-H) "
                "or 165 (SMPL-X)."
            )
        nb, nh, nf = layouts[n]
        orient_t, body_m = mats[:, 0], mats[:, 1 : 1 + nb]
        if nf:
            out["jaw_pose"] = mats[:, 1 + nb]
        if nh:
            start = 1 + nb + nf
            out["left_hand_pose"] = mats[:, start : start + nh]
            out["right_hand_pose"] = mats[:, start + nh : start + 2 * nh]
    else:
        raise MotionError(
            f"{source}: no pose found (looked for global_orient/body_pose or poses); keys are "
            f"{sorted(map(str, data))[:12]}."
        )
    for side in ("left", "right"):
        hand = first_key(data, (f"{side}_hand_pose", f"pose_hand_{side[0]}"))
        if hand is not None:
            out[f"{side}_hand_pose"] = rotations(
                to_tensor(hand, f"{side}_hand_pose", source), 15, f"{side}_hand_pose", source
            )
    jaw = first_key(data, ("jaw_pose", "pose_jaw"))
    if jaw is not None:
        out["jaw_pose"] = rotations(to_tensor(jaw, "jaw_pose", source), 1, "jaw_pose", source)[:, 0]
    expr = first_key(data, ("expression", "expressions", "expr"))
    if expr is not None:
        e = to_tensor(expr, "expression", source)
        out["expression"] = e[None] if e.ndim == 1 else e.reshape(e.shape[0], -1)
    has_face = "jaw_pose" in out or "expression" in out
    out["body_type"] = body_type_for(body_m.shape[1], body_type, source, has_face)
    if out["body_type"] in ("smpl", "mannequin"):
        for k in ("left_hand_pose", "right_hand_pose", "jaw_pose", "expression"):
            out.pop(k, None)
    out["global_orient"], out["body_pose"] = orient_t, body_m
    return out


def fit_frames(t: torch.Tensor, frames: int, name: str, source: str) -> torch.Tensor:
    """Broadcast a one-frame tensor to ``frames`` frames; MotionError if the count disagrees."""
    if t.shape[0] == frames:
        return t
    if t.shape[0] == 1:
        return t.expand(frames, *t.shape[1:]).clone()
    raise MotionError(
        f"{source}: {name} has {t.shape[0]} frames but the poses have {frames}; re-export the file."
    )
