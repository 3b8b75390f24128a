"""Editing motions: pure functions Motion -> Motion (inputs are never modified).

Conventions: world y-up, metres; rotations are matrices; frame indices are 0-based and ranges are
half-open like Python slices. Functions that move a whole posed body (rotate_motion, mirror_motion)
rotate it about the rest pelvis J0 as smplx does; without a body model the template value
(formats.convert.PELVIS_REST) is used. Turning about the vertical and mirroring depend only on
J0's horizontal components, which lie near the body's midline for every shape; pass
``pelvis_rest=`` for the exact J0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import roma
import torch

from amg_model.errors import MotionError
from amg_model.smpl.formats.convert import pelvis_rest_of, transform_person
from amg_model.smpl.kinematics import SMPL_MIRROR
from amg_model.smpl.motion import Motion, Person

_ROTATION_FIELDS = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose")


def slerp_rotmat(r0: torch.Tensor, r1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Shortest-arc interpolation between rotation matrices, elementwise.

    Args:
        r0, r1: [..., 3, 3] rotations. t: weights broadcastable to the batch shape [...]
            (0 gives r0, 1 gives r1).
    """
    delta = roma.rotmat_to_rotvec(r0.transpose(-1, -2) @ r1)  # [..., 3], angle <= pi
    return r0 @ roma.rotvec_to_rotmat(delta * t[..., None])


def sample_person(person: Person, times: torch.Tensor, key_times: torch.Tensor | None = None) -> Person:
    """Sample a person at fractional frame times: slerp rotations, lerp everything else.

    Args:
        times: [M] query times in frames of ``key_times`` units; clamped to the key range
            (the first / last key is held outside it).
        key_times: [F] increasing times of the person's frames (default 0..F-1).
    """
    frames = person.num_frames
    keys = torch.arange(frames, dtype=torch.float64) if key_times is None else key_times.double()
    q = times.double().clamp(keys[0], keys[-1])
    hi = torch.searchsorted(keys, q, right=True).clamp(1, max(frames - 1, 1))
    lo = (hi - 1).clamp(min=0)
    if frames == 1:
        hi = lo
    span = (keys[hi] - keys[lo]).clamp(min=1e-12)
    w = ((q - keys[lo]) / span).clamp(0, 1)

    def interp(name: str, t: torch.Tensor) -> torch.Tensor:
        a, b = t[lo], t[hi]
        if name in _ROTATION_FIELDS:  # [M, ..., 3, 3]: one weight per frame, over the joints
            wr = w.to(t.dtype).reshape(-1, *([1] * (t.ndim - 3))).expand(a.shape[:-2])
            return slerp_rotmat(a, b, wr)
        return a + (b - a) * w.to(t.dtype).reshape(-1, *([1] * (t.ndim - 1)))

    return replace(person, **{k: interp(k, v) for k, v in person.frame_tensors().items()})


def _check(motion: Motion, what: str) -> None:
    if not motion.persons:
        raise MotionError(f"{what}: the motion has no persons; load or create one first.")


def trim(motion: Motion, start: int = 0, end: int | None = None) -> Motion:
    """Frames [start, end) of every person (negative indices count from the end, like slices)."""
    _check(motion, "trim")
    frames = motion.num_frames
    s, e, _ = slice(start, end).indices(frames)
    if e <= s:
        raise MotionError(
            f"trim: frames [{start}, {end}) of a {frames}-frame motion are empty; choose start < end."
        )
    return replace(motion, persons=[p.map_frames(lambda t: t[s:e]) for p in motion.persons])


def resample(motion: Motion, target_fps: float) -> Motion:
    """Change the frame rate keeping the duration: first and last frames are kept exactly.

    The new frame count is round((F - 1) * target_fps / fps) + 1; frame k samples the old motion
    at time k / target_fps (slerp rotations, lerp translation / expression).
    """
    _check(motion, "resample")
    if not target_fps > 0:
        raise MotionError(f"resample: target frame rate {target_fps} must be positive.")
    frames = motion.num_frames
    count = max(1, round((frames - 1) * target_fps / motion.fps) + 1)
    times = torch.arange(count, dtype=torch.float64) * (motion.fps / target_fps)
    if count > 1:  # land exactly on the last frame despite the rounding of the count
        times = times * ((frames - 1) / times[-1].item())
    return Motion(persons=[sample_person(p, times) for p in motion.persons], fps=float(target_fps))


def loop(
    motion: Motion,
    num_frames: int | None = None,
    times: float | None = None,
    continue_translation: bool = True,
) -> Motion:
    """Repeat the motion to ``num_frames`` frames (or ``times`` repetitions).

    With ``continue_translation`` each repetition starts where the previous one would go next,
    so a walk cycle keeps walking: cycle k is shifted horizontally (x, z) by k times the clip's
    mean displacement per frame times F (the clip is taken as a cycle whose frame F would equal
    frame 0). The vertical component is never accumulated. Heading is not continued: a clip that
    turns repeats its turn from the original heading.
    """
    _check(motion, "loop")
    frames = motion.num_frames
    if (num_frames is None) == (times is None):
        raise MotionError("loop: give exactly one of num_frames and times.")
    total = int(num_frames) if num_frames is not None else int(round(frames * float(times)))
    if total < 1:
        raise MotionError(f"loop: the result would have {total} frames; ask for at least one.")
    idx = torch.arange(total) % frames
    cycle = torch.div(torch.arange(total), frames, rounding_mode="floor")
    persons = []
    for p in motion.persons:
        q = p.map_frames(lambda t: t[idx])
        if continue_translation and frames > 1:
            step = (p.transl[-1] - p.transl[0]) * (frames / (frames - 1))
            step = step * torch.tensor([1.0, 0.0, 1.0], dtype=step.dtype)
            q = replace(q, transl=q.transl + cycle[:, None].to(step.dtype) * step)
        persons.append(q)
    return replace(motion, persons=persons)


def yaw_matrix(angle_deg: float, dtype=torch.float32) -> torch.Tensor:
    """[3, 3] rotation about the vertical y axis (positive turns +z towards +x)."""
    return roma.rotvec_to_rotmat(torch.tensor([0.0, math.radians(angle_deg), 0.0], dtype=torch.float64)).to(
        dtype
    )


def _pick(motion: Motion, persons: Sequence[int] | None) -> set[int]:
    idx = set(range(len(motion.persons))) if persons is None else set(persons)
    bad = [i for i in idx if not 0 <= i < len(motion.persons)]
    if bad:
        raise MotionError(f"edit: person index {bad[0]} is out of range for {len(motion.persons)} persons.")
    return idx


def rotate_motion(
    motion: Motion,
    yaw_deg: float,
    about: str = "start",
    persons: Sequence[int] | None = None,
    pelvis_rest=None,
) -> Motion:
    """Turn persons about the vertical axis by ``yaw_deg``.

    Args:
        about: "start" (each person's pelvis position at frame 0, projected on the ground plane)
            or "origin" (the world origin).
        persons: indices to turn (default all).
    """
    _check(motion, "rotate")
    if about not in ("start", "origin"):
        raise MotionError(f"rotate: about must be 'start' or 'origin', got {about!r}.")
    chosen = _pick(motion, persons)
    out = []
    for i, p in enumerate(motion.persons):
        if i not in chosen:
            out.append(p)
            continue
        rot = yaw_matrix(yaw_deg, p.transl.dtype)
        offset = torch.zeros(3, dtype=p.transl.dtype)
        if about == "start":
            centre = p.transl[0] + pelvis_rest_of(p.body_type, pelvis_rest).to(p.transl)
            centre = centre * torch.tensor([1.0, 0.0, 1.0], dtype=centre.dtype)
            offset = centre - rot @ centre
        out.append(transform_person(p, rot, offset, pelvis_rest))
    return replace(motion, persons=out)


def translate_motion(motion: Motion, offset: Sequence[float], persons: Sequence[int] | None = None) -> Motion:
    """Move persons by ``offset`` [3] metres in the world."""
    _check(motion, "translate")
    chosen = _pick(motion, persons)
    out = []
    for i, p in enumerate(motion.persons):
        d = torch.as_tensor(offset, dtype=p.transl.dtype).reshape(3)
        out.append(replace(p, transl=p.transl + d) if i in chosen else p)
    return replace(motion, persons=out)


_REFLECT = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))


def _mirror_rot(r: torch.Tensor) -> torch.Tensor:
    s = _REFLECT.to(r)
    return s @ r @ s


def mirror_person(person: Person, pelvis_rest=None) -> Person:
    """Mirror one person left/right across the world plane x = 0.

    Body joints swap with their mirror (kinematics.SMPL_MIRROR), hands swap, every rotation R
    becomes S R S with S = diag(-1, 1, 1), and the pelvis position p = transl + J0 becomes S p.
    Mirroring twice gives the input back.
    """
    j = person.body_pose.shape[1]
    perm = [SMPL_MIRROR[k + 1] - 1 for k in range(j)]
    j0 = pelvis_rest_of(person.body_type, pelvis_rest).to(person.transl)
    s = _REFLECT.to(person.transl)
    fields = {
        "global_orient": _mirror_rot(person.global_orient),
        "body_pose": _mirror_rot(person.body_pose[:, perm]),
        "transl": (person.transl + j0) @ s.T - j0,
    }
    if person.left_hand_pose is not None or person.right_hand_pose is not None:
        left, right = person.left_hand_pose, person.right_hand_pose
        fields["left_hand_pose"] = None if right is None else _mirror_rot(right)
        fields["right_hand_pose"] = None if left is None else _mirror_rot(left)
    if person.jaw_pose is not None:
        fields["jaw_pose"] = _mirror_rot(person.jaw_pose)
    return replace(person, **fields)


def mirror_motion(motion: Motion, persons: Sequence[int] | None = None, pelvis_rest=None) -> Motion:
    """Mirror persons left/right across the plane x = 0 (see mirror_person)."""
    _check(motion, "mirror")
    chosen = _pick(motion, persons)
    return replace(
        motion,
        persons=[mirror_person(p, pelvis_rest) if i in chosen else p for i, p in enumerate(motion.persons)],
    )


def pad_person(person: Person, frames: int, mode: str = "hold") -> Person:
    """Extend a person to ``frames`` frames: "hold" repeats the last frame, "loop" repeats the clip
    (with translation continued, see loop)."""
    if person.num_frames >= frames:
        return person.map_frames(lambda t: t[:frames])
    if mode == "hold":
        idx = torch.arange(frames).clamp(max=person.num_frames - 1)
        return person.map_frames(lambda t: t[idx])
    if mode == "loop":
        return loop(Motion([person]), num_frames=frames).persons[0]
    raise MotionError(f"combine: pad must be 'hold' or 'loop', got {mode!r}.")


def combine(motions: Sequence[Motion], fps: float | None = None, pad: str = "hold") -> Motion:
    """Put the persons of several motions into one multi-person motion.

    Every motion is resampled to ``fps`` (default: the highest frame rate among them), then persons
    shorter than the longest are padded by ``pad``: "hold" (stand still in the last frame) or
    "loop" (repeat, continuing translation).
    """
    motions = [m for m in motions if m is not None]
    if not motions or not any(m.persons for m in motions):
        raise MotionError("combine: no persons to combine; give at least one non-empty motion.")
    rate = float(fps) if fps is not None else max(m.fps for m in motions)
    resampled = [m if abs(m.fps - rate) < 1e-9 else resample(m, rate) for m in motions if m.persons]
    frames = max(m.num_frames for m in resampled)
    persons = [pad_person(p, frames, pad) for m in resampled for p in m.persons]
    return Motion(persons=persons, fps=rate)


def select_persons(motion: Motion, which: Sequence[int | str]) -> Motion:
    """Keep persons by index or by name, in the order given."""
    out = []
    for w in which:
        if isinstance(w, str) and not w.lstrip("-").isdigit():
            found = [p for p in motion.persons if p.name == w]
            if not found:
                names = [p.name for p in motion.persons]
                raise MotionError(f"select: no person named {w!r}; names are {names}.")
            out.extend(found)
        else:
            i = int(w)
            if not -len(motion.persons) <= i < len(motion.persons):
                raise MotionError(
                    f"select: person index {i} is out of range for {len(motion.persons)} persons."
                )
            out.append(motion.persons[i])
    if not out:
        raise MotionError("select: no persons selected; give at least one index or name.")
    return replace(motion, persons=out)
