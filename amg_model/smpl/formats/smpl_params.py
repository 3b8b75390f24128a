"""Plain SMPL-family parameter files (.npz / .pkl / .pt / .json) with the usual key names.

Accepted layouts of the loaded object:
- a dict of batched arrays: ``global_orient`` [F, 3] | [F, 1, 3] | [F, 3, 3], ``body_pose``
  [F, 69 | 63] | [F, J, 3] | [F, J, 3, 3], ``transl`` [F, 3], ``betas`` [B] | [F, B]; or one packed
  ``poses`` [F, 72 | 66 | 156 | 165] (see convert.pose_from_mapping); aliases: root_orient,
  pose_body, poses, pose, smpl_poses, trans, smpl_trans, shape, smpl_betas, ...;
- a list of per-frame dicts with the same keys (stacked over frames);
- a dict with a ``persons`` list (or ``smpl_params``) holding several such dicts (one per person).

Translation and orientation are taken as they are: the file is assumed to be in our y-up world
(use ``up_axis="z"`` for z-up files). Frame rate: ``fps`` / ``mocap_framerate`` / ``frame_rate``
key, else the ``fps`` option, else 30.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from amg_model.errors import MotionError
from amg_model.smpl.formats.convert import (
    Z_UP_TO_Y_UP,
    betas_vector,
    change_body_type,
    first_key,
    fit_frames,
    gender_of,
    pose_from_mapping,
    to_str,
    to_tensor,
    transform_person,
    vectors,
)
from amg_model.smpl.motion import Motion, Person

TRANSL_KEYS = ("transl", "trans", "smpl_trans", "translation", "root_trans", "cam_t")
BETAS_KEYS = ("betas", "shape", "smpl_betas", "shapes", "beta")
FPS_KEYS = ("fps", "mocap_framerate", "mocap_frame_rate", "frame_rate", "framerate")
POSE_KEYS = (
    "global_orient",
    "root_orient",
    "body_pose",
    "pose_body",
    "poses",
    "pose",
    "smpl_poses",
    "smpl_pose",
    "fullpose",
    "full_pose",
)
DEFAULT_FPS = 30.0


def looks_like_smpl_params(data) -> bool:
    """Whether ``data`` has at least one recognised pose key (or is a list of such dicts)."""
    if isinstance(data, Mapping):
        if any(k in data for k in POSE_KEYS):
            return True
        persons = first_key(data, ("persons", "people", "smpl_params"))
        return persons is not None and looks_like_smpl_params(persons)
    if isinstance(data, Sequence) and not isinstance(data, str | bytes) and data:
        return all(isinstance(d, Mapping) for d in data) and looks_like_smpl_params(data[0])
    return False


def stack_frames(frames: Sequence[Mapping], source: str) -> dict[str, np.ndarray]:
    """Per-frame dicts -> one dict of arrays stacked over frames (keys of the first frame)."""
    out = {}
    for key in frames[0]:
        values = [f.get(key) for f in frames]
        if any(v is None for v in values):
            raise MotionError(f"{source}: key {key!r} is missing in some frames; re-export the file.")
        try:
            arrays = [np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for v in values]
            if arrays[0].dtype.kind in "US" or arrays[0].dtype == object:
                out[key] = arrays[0]
                continue
            # a per-frame value may carry a batch dimension of one ([1, 69], [1, 3, 3]): drop it
            out[key] = np.stack([a[0] if a.ndim > 1 and a.shape[0] == 1 else a for a in arrays])
        except ValueError:
            raise MotionError(
                f"{source}: key {key!r} changes shape between frames; re-export the file."
            ) from None
    return out


def person_from_params(data: Mapping, source: str, body_type: str | None = None, name: str = "") -> Person:
    """One Person from a dict of SMPL parameters (batched or single frame), in the data's own body
    type (``body_type`` only names it where the joint count allows, see convert.body_type_for)."""
    pose = pose_from_mapping(data, source, body_type)
    frames = pose["global_orient"].shape[0]
    transl = first_key(data, TRANSL_KEYS)
    transl_t = (
        torch.zeros(frames, 3)
        if transl is None
        else fit_frames(
            vectors(to_tensor(transl, "transl", source), 3, "transl", source), frames, "transl", source
        )
    )
    betas = first_key(data, BETAS_KEYS)
    betas_t = torch.zeros(10) if betas is None else betas_vector(to_tensor(betas, "betas", source), source)
    extra = {
        k: fit_frames(pose[k], frames, k, source)
        for k in ("left_hand_pose", "right_hand_pose", "jaw_pose", "expression")
        if k in pose
    }
    person = Person(
        body_type=pose["body_type"],
        gender=gender_of(data.get("gender"), source) if "gender" in data else "neutral",
        betas=betas_t,
        global_orient=pose["global_orient"],
        body_pose=fit_frames(pose["body_pose"], frames, "body_pose", source),
        transl=transl_t,
        name=name or to_str(data.get("name"), ""),
        **extra,
    )
    return person


def fps_of(data, default: float | None, source: str) -> float:
    """The frame rate stored in ``data`` (any FPS_KEYS), else ``default``, else 30."""
    value = first_key(data, FPS_KEYS) if isinstance(data, Mapping) else None
    if value is None:
        return float(default) if default is not None else DEFAULT_FPS
    try:
        fps = float(
            np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value).reshape(-1)[0]
        )
    except (TypeError, ValueError, IndexError):
        raise MotionError(
            f"{source}: frame rate entry {value!r} is not a number; fix it or pass fps."
        ) from None
    return fps


def motion_from_smpl_params(
    data,
    source: str,
    fps: float | None = None,
    body_type: str | None = None,
    up_axis: str = "y",
    pelvis_rest=None,
) -> Motion:
    """Build a Motion from loaded SMPL parameters (see the module docstring for layouts).

    Args:
        data: dict of arrays, list of per-frame dicts, or dict with a ``persons`` list.
        source: file name for error messages.
        fps: frame rate when the file stores none (a stored one wins).
        body_type: the data's type where the joint count allows ("smplh" vs "smplx"), else
            the type to convert to (convert.change_body_type), e.g. "mannequin".
        up_axis: "y" (our world) or "z" (rotated -90 deg about x into y-up, about the origin).
        pelvis_rest: rest pelvis J0 [3] of the file's body model (default: template value).
    """
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if not data:
            raise MotionError(f"{source}: the file holds an empty list of frames.")
        if not all(isinstance(d, Mapping) for d in data):
            raise MotionError(f"{source}: expected a list of per-frame parameter dicts; got other items.")
        data = stack_frames(data, source)
    if not isinstance(data, Mapping):
        raise MotionError(f"{source}: expected a dict of SMPL parameters, got {type(data).__name__}.")
    rate = fps_of(data, fps, source)
    group = first_key(data, ("persons", "people", "smpl_params"))
    if group is not None and not any(k in data for k in POSE_KEYS):
        items = group if isinstance(group, Sequence) else [group]
        persons = []
        for i, item in enumerate(items):
            if isinstance(item, Sequence) and not isinstance(item, str | bytes):
                item = stack_frames(item, source)
            if not isinstance(item, Mapping):
                raise MotionError(f"{source}: person {i} is not a dict of parameters.")
            persons.append(person_from_params(item, source, body_type, name=str(i)))
    else:
        persons = [person_from_params(data, source, body_type)]
    if up_axis not in ("y", "z"):
        raise MotionError(f"{source}: up_axis must be 'y' or 'z', got {up_axis!r}.")
    if up_axis == "z":
        persons = [transform_person(p, Z_UP_TO_Y_UP, pelvis_rest=pelvis_rest) for p in persons]
    persons = [change_body_type(p, body_type, pelvis_rest) for p in persons]
    motion = Motion(persons=persons, fps=rate)
    motion.validate(source)
    return motion
