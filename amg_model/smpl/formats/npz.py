"""The project's own motion file: one ``.npz`` (numpy zip, no pickles) per Motion.

Layout (format version 1); every array is float32 unless noted, rotations are axis-angle:

    format            str  "amg-motion"
    format_version    int  1
    fps               float
    num_persons       int  P
    p{i}.body_type    str  "smpl" | "smplh" | "smplx" | "mannequin"
    p{i}.gender       str  "neutral" | "male" | "female"
    p{i}.name         str
    p{i}.betas        [B]
    p{i}.global_orient  [F, 3]
    p{i}.body_pose    [F, J, 3]     (J = 23 for smpl/mannequin, 21 for smplh/smplx)
    p{i}.transl       [F, 3]        metres, y-up world
    p{i}.left_hand_pose / p{i}.right_hand_pose  [F, 15, 3]  optional
    p{i}.jaw_pose     [F, 3]        optional
    p{i}.expression   [F, E]        optional
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import roma
import torch

from amg_model.errors import MotionError
from amg_model.smpl.formats.convert import rotations, to_str, to_tensor, vectors
from amg_model.smpl.motion import BODY_JOINTS, Motion, Person

FORMAT_NAME = "amg-motion"
FORMAT_VERSION = 1
_ROTATIONS = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose")


def is_project_npz(data: Mapping) -> bool:
    """Whether loaded npz contents are in the project's format."""
    return "format" in data and to_str(data["format"]) == FORMAT_NAME


def save_project_npz(motion: Motion, path: str | Path) -> None:
    """Write ``motion`` to ``path`` (.npz) in the project's format; validates it first."""
    path = Path(path)
    motion.validate(path.name)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT_NAME),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "fps": np.array(float(motion.fps), dtype=np.float64),
        "num_persons": np.array(len(motion.persons), dtype=np.int64),
    }
    for i, p in enumerate(motion.persons):
        key = f"p{i}."
        arrays[key + "body_type"] = np.array(p.body_type)
        arrays[key + "gender"] = np.array(p.gender)
        arrays[key + "name"] = np.array(p.name)
        arrays[key + "betas"] = p.betas.detach().cpu().float().numpy()
        for name, t in p.frame_tensors().items():
            t = t.detach().cpu().float()
            if name in _ROTATIONS:
                t = roma.rotmat_to_rotvec(t)
            arrays[key + name] = t.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # np.savez would append ".npz" to other suffixes
        np.savez(f, **arrays)


def motion_from_project_npz(data: Mapping, source: str) -> Motion:
    """Build a Motion from the arrays of a project ``.npz`` (see the module docstring)."""
    try:
        version = int(np.asarray(data["format_version"]).reshape(-1)[0])
        fps = float(np.asarray(data["fps"]).reshape(-1)[0])
        count = int(np.asarray(data["num_persons"]).reshape(-1)[0])
    except (KeyError, ValueError, TypeError, IndexError) as err:
        raise MotionError(f"{source}: project motion file lacks a valid {err} entry; re-save it.") from None
    if version > FORMAT_VERSION:
        raise MotionError(
            f"{source}: motion format version {version} is newer than this pack reads "
            f"({FORMAT_VERSION}); update the pack."
        )
    persons = []
    for i in range(count):
        key = f"p{i}."
        missing = [
            n for n in ("body_type", "betas", "global_orient", "body_pose", "transl") if key + n not in data
        ]
        if missing:
            raise MotionError(f"{source}: person {i} lacks {', '.join(missing)}; re-save the file.")
        body_type = to_str(data[key + "body_type"])
        if body_type not in BODY_JOINTS:
            raise MotionError(f"{source}: person {i} has unknown body type {body_type!r}; re-save the file.")
        fields: dict[str, torch.Tensor | None] = {}
        for name in ("left_hand_pose", "right_hand_pose", "jaw_pose", "expression"):
            fields[name] = None
            if key + name in data:
                t = to_tensor(data[key + name], name, source)
                if name == "jaw_pose":
                    t = rotations(t, 1, name, source)[:, 0]
                elif name != "expression":
                    t = rotations(t, 15, name, source)
                fields[name] = t
        person = Person(
            body_type=body_type,
            gender=to_str(data.get(key + "gender"), "neutral"),
            betas=to_tensor(data[key + "betas"], "betas", source).reshape(-1),
            global_orient=rotations(
                to_tensor(data[key + "global_orient"], "global_orient", source), 1, "global_orient", source
            )[:, 0],
            body_pose=rotations(
                to_tensor(data[key + "body_pose"], "body_pose", source),
                BODY_JOINTS[body_type],
                "body_pose",
                source,
            ),
            transl=vectors(to_tensor(data[key + "transl"], "transl", source), 3, "transl", source),
            name=to_str(data.get(key + "name"), ""),
            **fields,
        )
        persons.append(person)
    motion = Motion(persons=persons, fps=fps)
    motion.validate(source)
    return motion
