"""Aim points that frame the people of a motion."""

from __future__ import annotations

import torch

from amg_model.camera.presets import subject_center
from amg_model.errors import CameraError


def motion_target(motion, body_model=None, follow: bool = False) -> torch.Tensor:
    """The point a camera should aim at to film every person of ``motion``.

    Args:
        motion: an ``amg_model.smpl.motion.Motion``.
        body_model: the body that will be rendered (joints differ slightly between bodies);
            default: the built-in mannequin.
        follow: True for one aim point per frame (the camera follows the people); False for one
            fixed point, the centre of everything they cover over the clip.

    Returns:
        [F, 3] world aim points in metres (all rows equal when ``follow`` is False).
    """
    if not motion.persons:
        raise CameraError("the motion to film has no persons; load or make a motion first.")
    if body_model is None:
        from amg_model.smpl.body import load_body_model

        body_model = load_body_model("mannequin")
    with torch.no_grad():
        joints = [body_model.pose_person(p).joints.float().cpu() for p in motion.persons]
    return subject_center(torch.cat(joints, dim=1), follow=follow)
