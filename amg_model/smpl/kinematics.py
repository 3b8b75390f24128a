"""The SMPL 24-joint skeleton and forward kinematics shared by every body model.

Tensors in, tensors out: device and dtype come from the inputs.
"""

import torch

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip

# Parent of each joint in SMPL_JOINT_NAMES; -1 for the root.
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)  # fmt: skip

# Index of each joint's mirror image (left <-> right) in SMPL_JOINT_NAMES.
SMPL_MIRROR: tuple[int, ...] = (
    0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22,
)  # fmt: skip


def forward_kinematics(
    rotmats: torch.Tensor, rest_joints: torch.Tensor, parents: tuple[int, ...] = SMPL_PARENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a skeleton.

    Args:
        rotmats: [..., J, 3, 3] local joint rotations (joint 0 is the global orientation).
        rest_joints: [..., J, 3] joint positions in the rest pose (broadcast against rotmats).
        parents: parent index of each joint, -1 for the root; parents come before children.

    Returns:
        joints [..., J, 3] posed joint positions (root at its rest position, no translation),
        transforms [..., J, 4, 4] rigid transforms that map rest-pose points bound to each joint
        to posed points (the linear-blend-skinning transforms).
    """
    batch = torch.broadcast_shapes(rotmats.shape[:-3], rest_joints.shape[:-2])
    rotmats = rotmats.expand(*batch, *rotmats.shape[-3:])
    rest_joints = rest_joints.expand(*batch, *rest_joints.shape[-2:])
    rel = rest_joints.clone()
    for j, p in enumerate(parents):
        if p >= 0:
            rel[..., j, :] = rest_joints[..., j, :] - rest_joints[..., p, :]
    world_rot: list[torch.Tensor] = []
    world_pos: list[torch.Tensor] = []
    for j, p in enumerate(parents):
        if p < 0:
            world_rot.append(rotmats[..., j, :, :])
            world_pos.append(rel[..., j, :])
        else:
            world_rot.append(world_rot[p] @ rotmats[..., j, :, :])
            world_pos.append(world_pos[p] + (world_rot[p] @ rel[..., j, :, None])[..., 0])
    rot = torch.stack(world_rot, dim=-3)
    joints = torch.stack(world_pos, dim=-2)
    # Skinning transform: x_posed = R_world (x_rest - j_rest) + j_posed.
    trans = joints - (rot @ rest_joints[..., None])[..., 0]
    transforms = torch.zeros(*rot.shape[:-2], 4, 4, dtype=rot.dtype, device=rot.device)
    transforms[..., :3, :3] = rot
    transforms[..., :3, 3] = trans
    transforms[..., 3, 3] = 1.0
    return joints, transforms
