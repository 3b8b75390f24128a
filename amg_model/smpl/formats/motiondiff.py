"""SMPL motions saved by ComfyUI-MotionDiff's "Save SMPL" node (``*_smpl_NNNNN_.pt``).

That node writes ``torch.save({"thetas": thetas, "meta": meta})``. For motions fitted from
generated joints (MotionDiff's SMPLify path), ``thetas`` is [1, 25, 6, F]: rows 0-23 are the 24
SMPL joint rotations (root first) in the 6D representation of pytorch3d's
``matrix_to_rotation_6d`` (the first two ROWS of each matrix), row 24 holds the root joint
position in its first three values (zero padded). ``meta`` holds ``betas`` [F, 10] (the fitted
shape, averaged here), ``joints``, ``pose``, ``cam``, and may hold ``normalized_to_vertices``.

Conversions: the motions are HumanML3D-style (y-up, facing +z, metres) like our world, so no
rotation is applied. The root position is the pelvis joint, so transl = root - J0 (J0 the rest
pelvis, template default unless ``pelvis_rest=`` is given). Frame rate: HumanML3D's 20 fps unless
``fps=`` is given. Files with ``normalized_to_vertices`` (meshes from 4D-Humans in MotionDiff)
store vertices, not parameters, and are refused.
"""

from __future__ import annotations

from collections.abc import Mapping

import roma
import torch

from amg_model.errors import MotionError
from amg_model.smpl.formats.convert import betas_vector, change_body_type, pelvis_rest_of, to_tensor
from amg_model.smpl.motion import Motion, Person

MOTIONDIFF_FPS = 20.0


def is_motiondiff(data) -> bool:
    """Whether a loaded ``.pt`` object looks like a MotionDiff SMPL save."""
    return isinstance(data, Mapping) and "thetas" in data and "meta" in data


def rot6d_rows_to_rotmat(d6: torch.Tensor) -> torch.Tensor:
    """[..., 6] (first two matrix rows, pytorch3d convention) -> [..., 3, 3] rotation matrices."""
    cols = d6.reshape(*d6.shape[:-1], 2, 3).transpose(-1, -2)  # the two rows as columns [..., 3, 2]
    return roma.special_gramschmidt(cols).transpose(-1, -2)


def motion_from_motiondiff(
    data: Mapping, source: str, fps: float | None = None, body_type: str = "smpl", pelvis_rest=None
) -> Motion:
    """Build a one-person Motion from a MotionDiff SMPL save (see the module docstring)."""
    meta = data.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise MotionError(f"{source}: 'meta' is not a dict; is this a ComfyUI-MotionDiff SMPL file?")
    if bool(meta.get("normalized_to_vertices", False)):
        raise MotionError(
            f"{source}: this MotionDiff file stores mesh vertices, not SMPL parameters; export the "
            "4D-Humans tracking results instead."
        )
    thetas = to_tensor(data["thetas"], "thetas", source)
    if thetas.ndim == 4 and thetas.shape[0] == 1:
        thetas = thetas[0]
    if thetas.ndim != 3 or tuple(thetas.shape[:2]) != (25, 6) or thetas.shape[2] == 0:
        raise MotionError(
            f"{source}: thetas has shape {tuple(data['thetas'].shape)}; expected [1, 25, 6, F] "
            "(24 rotations in 6D plus the root position)."
        )
    thetas = thetas.permute(2, 0, 1)  # [F, 25, 6]
    mats = rot6d_rows_to_rotmat(thetas[:, :24])
    root = thetas[:, 24, :3]
    betas = meta.get("betas")
    betas_t = (
        torch.zeros(10) if betas is None else betas_vector(to_tensor(betas, "meta betas", source), source)
    )
    person = Person(
        body_type="smpl",
        gender="neutral",
        betas=betas_t,
        global_orient=mats[:, 0],
        body_pose=mats[:, 1:],
        transl=root - pelvis_rest_of("smpl", pelvis_rest),
        name="0",
    )
    person = change_body_type(person, body_type, pelvis_rest)
    motion = Motion(persons=[person], fps=float(fps) if fps is not None else MOTIONDIFF_FPS)
    motion.validate(source)
    return motion
