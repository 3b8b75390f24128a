"""PHALP / 4D-Humans tracklets (the results ``.pkl`` that ``track.py`` writes).

The file is a dict ``frame_name -> record`` with, per record, ``time`` (frame index) and parallel
lists over the confirmed tracks of that frame: ``tid`` (track id), ``tracked_time`` (0 when the
track was observed in this frame, >0 when PHALP only predicted it), ``smpl`` (dict with
``global_orient`` [1, 3, 3], ``body_pose`` [23, 3, 3], ``betas`` [10]) and ``camera`` (the body's
translation in the camera frame, metres, for PHALP's fixed focal length, so depth is only
approximate).

Reading:
- only observed samples are used (``tracked_time == 0`` when present);
- every track becomes one Person over the whole frame range of the file (frames sorted by
  ``time``, frames with nobody included); missing frames inside a track are filled by
  interpolation (``gaps="interpolate"``: slerp / lerp between the neighbouring observations) or by
  holding the last observation (``gaps="hold"``); before its first and after its last observation a
  track holds its first / last pose. Motion has no visibility flag, so a person who leaves and
  re-enters the picture stays in the scene in between;
- results are in the OpenCV camera frame (x right, y down, z forward); they are rotated 180 deg
  about x into our y-up world, so the camera sits at the origin looking along -z (see
  convert.transform_person for the pelvis-offset convention);
- betas: the mean over the track's observations; body type "smpl" (``body_type=`` converts, see
  convert.change_body_type).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch

from amg_model.errors import MotionError
from amg_model.smpl.edit import sample_person
from amg_model.smpl.formats.convert import (
    OPENCV_TO_Y_UP,
    change_body_type,
    rotations,
    to_str,
    to_tensor,
    transform_person,
    vectors,
)
from amg_model.smpl.motion import Motion, Person

logger = logging.getLogger(__name__)


def is_phalp(data) -> bool:
    """Whether an unpickled object looks like PHALP / 4D-Humans tracking results."""
    if not isinstance(data, Mapping) or not data:
        return False
    first = next(iter(data.values()))
    return isinstance(first, Mapping) and "tid" in first and "smpl" in first


def _frame_order(data: Mapping, source: str) -> list:
    def key(item):
        name, rec = item
        t = rec.get("time") if isinstance(rec, Mapping) else None
        return (0, int(t), "") if t is not None else (1, 0, str(name))

    items = sorted(data.items(), key=key)
    for name, rec in items:
        if not isinstance(rec, Mapping):
            raise MotionError(f"{source}: frame {name!r} is not a record dict; is this a PHALP results file?")
    return items


def motion_from_phalp(
    data: Mapping,
    source: str,
    fps: float = 30.0,
    gaps: str = "interpolate",
    min_frames: int = 1,
    tracks: Sequence[int] | None = None,
    body_type: str = "smpl",
    pelvis_rest=None,
) -> Motion:
    """Build a multi-person y-up Motion from PHALP / 4D-Humans tracklets.

    Args:
        data: the unpickled results dict.
        fps: the video frame rate (the file does not store it).
        gaps: "interpolate" or "hold" (see the module docstring).
        min_frames: drop tracks observed in fewer frames (spurious detections).
        tracks: keep only these track ids, in this order (default all, by id).
        body_type: the body type to convert the SMPL tracks to (default "smpl").
    """
    if gaps not in ("interpolate", "hold"):
        raise MotionError(f"{source}: gaps must be 'interpolate' or 'hold', got {gaps!r}.")
    frames = _frame_order(data, source)
    if not frames:
        raise MotionError(f"{source}: the tracking results hold no frames.")
    samples: dict[int, list[tuple[int, Mapping, object]]] = {}
    for index, (name, rec) in enumerate(frames):
        tids = list(rec.get("tid", []))
        smpls = list(rec.get("smpl", []))
        cams = list(rec.get("camera", []))
        ages = list(rec.get("tracked_time", [0] * len(tids)))
        if not (len(tids) == len(smpls) == len(ages)) or (cams and len(cams) != len(tids)):
            raise MotionError(
                f"{source}: frame {to_str(name)!r} has lists of different lengths; the file is damaged."
            )
        for k, tid in enumerate(tids):
            if int(ages[k]) != 0:
                continue  # predicted, not observed
            if not isinstance(smpls[k], Mapping):
                raise MotionError(f"{source}: frame {to_str(name)!r} has an smpl entry that is not a dict.")
            samples.setdefault(int(tid), []).append((index, smpls[k], cams[k] if cams else None))
    chosen = sorted(samples) if tracks is None else [int(t) for t in tracks]
    missing = [t for t in chosen if t not in samples]
    if missing:
        raise MotionError(f"{source}: no track with id {missing[0]}; ids are {sorted(samples)}.")
    total = len(frames)
    persons = []
    for tid in chosen:
        obs = samples[tid]
        if len(obs) < min_frames:
            logger.info("%s: track %d observed in %d frames only; dropped", source, tid, len(obs))
            continue
        persons.append(_track_person(tid, obs, total, gaps, body_type, source, pelvis_rest))
    if not persons:
        raise MotionError(
            f"{source}: no track was observed in at least {min_frames} frames; lower min_frames or "
            "check that the video shows people."
        )
    motion = Motion(persons=persons, fps=float(fps))
    motion.validate(source)
    return motion


def _track_person(tid, obs, total, gaps, body_type, source, pelvis_rest) -> Person:
    where = f"track {tid}"
    orient = torch.stack(
        [
            rotations(
                to_tensor(s["global_orient"], f"{where} global_orient", source),
                1,
                f"{where} global_orient",
                source,
            )[0, 0]
            for _, s, _ in obs
        ]
    )
    body = torch.stack(
        [
            rotations(
                to_tensor(s["body_pose"], f"{where} body_pose", source), 23, f"{where} body_pose", source
            )[0]
            for _, s, _ in obs
        ]
    )
    betas = torch.stack(
        [to_tensor(s["betas"], f"{where} betas", source).reshape(-1) for _, s, _ in obs]
    ).mean(0)
    transl = torch.stack(
        [
            torch.zeros(3)
            if c is None
            else vectors(to_tensor(c, f"{where} camera", source), 3, "camera", source)[0]
            for _, _, c in obs
        ]
    )
    observed = Person(
        body_type="smpl",
        gender="neutral",
        betas=betas,
        global_orient=orient,
        body_pose=body,
        transl=transl,
        name=str(tid),
    )
    key_times = torch.tensor([i for i, _, _ in obs], dtype=torch.float64)
    query = torch.arange(total, dtype=torch.float64)
    if gaps == "hold":  # snap each frame to the last observation at or before it
        pos = torch.searchsorted(key_times, query, right=True).clamp(min=1) - 1
        query = key_times[pos]
    person = sample_person(observed, query, key_times)
    person = transform_person(person, OPENCV_TO_Y_UP, pelvis_rest=pelvis_rest)
    return change_body_type(person, body_type, pelvis_rest)
