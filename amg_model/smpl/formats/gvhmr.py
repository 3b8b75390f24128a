"""GVHMR results (``hmr4d_results.pt``, written by GVHMR's ``tools/demo/demo.py`` with torch.save).

Keys read: ``smpl_params_global`` (gravity-aligned world, y up) and ``smpl_params_incam`` (OpenCV
camera frame: x right, y down, z forward), each a dict with ``global_orient`` [F, 3],
``body_pose`` [F, 63], ``transl`` [F, 3], ``betas`` [F, 10] (axis-angle). GVHMR's body model is
SMPL-X (21 body joints), so the body type is "smplx" (``body_type=`` converts, see
convert.change_body_type); betas are averaged over frames. The file stores no frame rate:
GVHMR's demo processes every frame of the video, so pass the video's ``fps`` (default 30).

``frame="world"`` (default) keeps the global result as it is: y-up, but its heading and horizontal
origin are GVHMR's (the first frame is not moved to face +z; use edit.rotate_motion /
translate_motion). ``frame="camera"`` rotates the in-camera result 180 deg about x, so the camera
sits at the origin looking along -z, which matches renders from that camera.
"""

from __future__ import annotations

from collections.abc import Mapping

from amg_model.errors import MotionError
from amg_model.smpl.formats.convert import OPENCV_TO_Y_UP, change_body_type, transform_person
from amg_model.smpl.formats.smpl_params import person_from_params
from amg_model.smpl.motion import Motion

GVHMR_KEYS = {"world": "smpl_params_global", "camera": "smpl_params_incam"}


def is_gvhmr(data) -> bool:
    """Whether a loaded ``.pt`` object looks like GVHMR results."""
    return isinstance(data, Mapping) and any(k in data for k in GVHMR_KEYS.values())


def motion_from_gvhmr(
    data: Mapping,
    source: str,
    fps: float = 30.0,
    frame: str = "world",
    body_type: str = "smplx",
    pelvis_rest=None,
) -> Motion:
    """Build a one-person y-up Motion from GVHMR results (see the module docstring)."""
    if frame not in GVHMR_KEYS:
        raise MotionError(f"{source}: frame must be 'world' or 'camera', got {frame!r}.")
    params = data.get(GVHMR_KEYS[frame])
    if not isinstance(params, Mapping):
        raise MotionError(
            f"{source}: GVHMR results lack {GVHMR_KEYS[frame]!r}; use frame='world' or 'camera' as available."
        )
    missing = [k for k in ("global_orient", "body_pose", "transl") if k not in params]
    if missing:
        raise MotionError(f"{source}: {GVHMR_KEYS[frame]} lacks {', '.join(missing)}; re-run GVHMR's demo.")
    person = person_from_params(params, source, "smplx", name="0")
    if frame == "camera":
        person = transform_person(person, OPENCV_TO_Y_UP, pelvis_rest=pelvis_rest)
    person = change_body_type(person, body_type, pelvis_rest)
    motion = Motion(persons=[person], fps=float(fps))
    motion.validate(source)
    return motion
