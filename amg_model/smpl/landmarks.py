"""Where things are on a body mesh: face landmarks, SMPL-joint selection, body-part regions.

Regions are small integers per vertex, derived from the dominant skinning joint (so they exist
for every body type); the hair region is the part of the head skin above and behind a plane
through the hairline, placed from the face landmarks of the rest pose.
"""

from __future__ import annotations

import torch
from smplx.vertex_ids import vertex_ids as _SMPLX_VERTEX_IDS

FACE_LANDMARK_NAMES: tuple[str, ...] = ("nose", "right_eye", "left_eye", "right_ear", "left_ear")

# Vertex ids of FACE_LANDMARK_NAMES on the SMPL-family meshes (smplx's keypoint tables;
# SMPL and SMPL-H share one topology).
_KEYS = ("nose", "reye", "leye", "rear", "lear")
FACE_LANDMARK_VERTEX_IDS: dict[str, tuple[int, ...]] = {
    "smpl": tuple(_SMPLX_VERTEX_IDS["smplh"][k] for k in _KEYS),
    "smplh": tuple(_SMPLX_VERTEX_IDS["smplh"][k] for k in _KEYS),
    "smplx": tuple(_SMPLX_VERTEX_IDS["smplx"][k] for k in _KEYS),
}

# Indices into each model's own joint list that give SMPL's 24 joints: the 22 body joints, then
# left_middle1 / right_middle1 for SMPL's left_hand / right_hand (the middle of the knuckle row).
SMPL_JOINTS_OF: dict[str, tuple[int, ...]] = {
    "smpl": tuple(range(24)),
    "mannequin": tuple(range(24)),
    "smplh": (*range(22), 25, 40),  # 22 body, then 15 left-hand, 15 right-hand joints
    "smplx": (*range(22), 28, 43),  # 22 body, jaw, left_eye, right_eye, then the hands
}

# Body-part regions (values of ``vertex_regions``).
REGION_SKIN_HEAD = 0  # face, head skin and neck
REGION_HAIR = 1
REGION_TORSO = 2
REGION_UPPER_ARMS = 3
REGION_FOREARMS = 4
REGION_HANDS = 5
REGION_HIPS = 6
REGION_THIGHS = 7
REGION_SHINS = 8
REGION_FEET = 9
REGION_NAMES: tuple[str, ...] = (
    "skin_head", "hair", "torso", "upper_arms", "forearms", "hands", "hips", "thighs", "shins", "feet",
)  # fmt: skip

# Region of the vertices dominated by each SMPL joint (kinematics.SMPL_JOINT_NAMES order).
_REGION_OF_SMPL_JOINT = (
    REGION_HIPS, REGION_THIGHS, REGION_THIGHS, REGION_TORSO, REGION_SHINS, REGION_SHINS,
    REGION_TORSO, REGION_FEET, REGION_FEET, REGION_TORSO, REGION_FEET, REGION_FEET,
    REGION_SKIN_HEAD, REGION_TORSO, REGION_TORSO, REGION_SKIN_HEAD, REGION_UPPER_ARMS,
    REGION_UPPER_ARMS, REGION_FOREARMS, REGION_FOREARMS, REGION_HANDS, REGION_HANDS,
    REGION_HANDS, REGION_HANDS,
)  # fmt: skip
_HEAD_JOINT = 15


def region_of_joint_column(num_joints: int) -> torch.Tensor:
    """Region of each skinning-weight column: [J] long, for J = 24 (SMPL), 52 (SMPL-H), 55 (SMPL-X)."""
    table = list(_REGION_OF_SMPL_JOINT[:22])
    if num_joints == 24:
        table += list(_REGION_OF_SMPL_JOINT[22:])
    elif num_joints == 55:  # jaw and eyes, then 30 hand joints
        table += [REGION_SKIN_HEAD] * 3 + [REGION_HANDS] * 30
    else:  # SMPL-H: 30 hand joints
        table += [REGION_HANDS] * (num_joints - 22)
    return torch.tensor(table, dtype=torch.long)


def regions_from_weights(
    lbs_weights: torch.Tensor, rest_vertices: torch.Tensor, rest_landmarks: torch.Tensor
) -> torch.Tensor:
    """Body-part region of every vertex.

    Args:
        lbs_weights: [V, J] skinning weights (first 22 columns in SMPL joint order).
        rest_vertices: [V, 3] vertices of the rest pose (y-up, facing +z).
        rest_landmarks: [5, 3] FACE_LANDMARK_NAMES positions in the same pose.

    Returns:
        [V] long, REGION_* values. Hair: vertices dominated by the head joint that lie above a
        plane through a front hairline 6 cm above the eyes and a line 2 cm below and 8 cm behind
        the ears (the plane contains the left-right axis; the ears stay skin).
    """
    dominant = lbs_weights.argmax(dim=1).cpu()
    regions = region_of_joint_column(lbs_weights.shape[1])[dominant]
    lm = rest_landmarks.detach().cpu().double()
    verts = rest_vertices.detach().cpu().double()
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    eyes, ears = lm[1:3].mean(0), lm[3:5].mean(0)
    fwd = lm[0] - ears
    fwd = fwd - (fwd @ up) * up
    fwd = fwd / fwd.norm().clamp_min(1e-9)
    front = eyes + 0.06 * up
    back = ears - 0.02 * up - 0.08 * fwd
    # In the (forward, up) plane: the normal of the line back -> front, pointing up and back.
    d_f, d_u = (front - back) @ fwd, (front - back) @ up
    normal = -d_u * fwd + d_f * up
    above = (verts - back) @ normal > 0
    hair = above & (dominant == _HEAD_JOINT)
    regions[hair] = REGION_HAIR
    return regions
