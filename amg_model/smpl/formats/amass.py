"""AMASS motion files (.npz): SMPL-H (``poses`` [F, 156]) and SMPL-X (``poses`` [F, 165]) variants.

Keys read: ``poses``, ``trans`` [F, 3], ``betas`` [16] (any length), ``gender`` (str or bytes),
``mocap_framerate`` (SMPL-H release) or ``mocap_frame_rate`` (SMPL-X release). ``dmpls`` and the
split keys of the SMPL-X release (``root_orient``, ``pose_body``, ...) are ignored: ``poses``
holds the same values.

AMASS is z-up; our world is y-up. The whole posed body is rotated by -90 degrees about the world
x axis, about the world origin: global_orient' = M @ global_orient and
transl' = M @ (transl + J0) - J0, where J0 is the rest pelvis position of the body model. J0 depends
on the body model file and the betas; without a body model we use the template mean-shape value
(convert.PELVIS_REST); the body is then off by about 1.4 times the difference between the true
J0 and the template's (zero for the mean shape, centimetres for unusual shapes). Pass
``pelvis_rest=`` (the J0 of the loaded body model with these betas) for the exact result.
"""

from __future__ import annotations

from collections.abc import Mapping

from amg_model.errors import MotionError
from amg_model.smpl.formats.convert import (
    Z_UP_TO_Y_UP,
    change_body_type,
    gender_of,
    to_tensor,
    transform_person,
)
from amg_model.smpl.formats.smpl_params import fps_of, person_from_params
from amg_model.smpl.motion import Motion

AMASS_FPS_KEYS = ("mocap_framerate", "mocap_frame_rate")


def is_amass(data: Mapping) -> bool:
    """Whether loaded npz contents look like an AMASS sequence."""
    return "poses" in data and "trans" in data and any(k in data for k in AMASS_FPS_KEYS)


def motion_from_amass(
    data: Mapping, source: str, pelvis_rest=None, body_type: str | None = None, name: str = ""
) -> Motion:
    """Build a y-up Motion (one person, smplh or smplx) from the arrays of an AMASS ``.npz``.

    ``body_type`` converts to another body type (convert.change_body_type), e.g. "mannequin".
    """
    poses = to_tensor(data["poses"], "poses", source)
    if poses.ndim != 2 or poses.shape[1] not in (156, 165):
        raise MotionError(
            f"{source}: AMASS poses has shape {tuple(poses.shape)}; expected [F, 156] (SMPL-H) or "
            "[F, 165] (SMPL-X)."
        )
    body_type = "smplh" if poses.shape[1] == 156 else "smplx"
    params = {"poses": poses, "trans": data["trans"], "betas": data.get("betas")}
    person = person_from_params(params, source, body_type, name=name)
    person.gender = gender_of(data.get("gender"), source) if data.get("gender") is not None else "neutral"
    if body_type == "smplx" and person.jaw_pose is None:
        raise MotionError(f"{source}: SMPL-X poses without a jaw pose; re-export the file.")
    person = transform_person(person, Z_UP_TO_Y_UP, pelvis_rest=pelvis_rest)
    person = change_body_type(person, body_type, pelvis_rest)
    motion = Motion(persons=[person], fps=fps_of(data, None, source))
    motion.validate(source)
    return motion
