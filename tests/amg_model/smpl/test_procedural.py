"""Procedural motions: shapes, smoothness and plausibility checked on a simple rest skeleton."""

import pytest
import torch

from amg_model.errors import MotionError
from amg_model.smpl.kinematics import SMPL_JOINT_NAMES, SMPL_PARENTS, forward_kinematics
from amg_model.smpl.procedural import KINDS, REST_SOLE_DEPTH_M, procedural_motion

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}

# A hand-made rest skeleton, a little taller than the one the module uses internally, so that the
# checks do not depend on the exact bone lengths.
_OFFSETS = {
    "pelvis": (0.0, -0.2, 0.0), "left_hip": (0.07, -0.1, 0.0), "right_hip": (-0.07, -0.1, 0.0),
    "spine1": (0.0, 0.12, 0.0), "left_knee": (0.0, -0.41, 0.0), "right_knee": (0.0, -0.41, 0.0),
    "spine2": (0.0, 0.14, 0.0), "left_ankle": (0.0, -0.42, -0.03), "right_ankle": (0.0, -0.42, -0.03),
    "spine3": (0.0, 0.06, 0.0), "left_foot": (0.0, -0.06, 0.13), "right_foot": (0.0, -0.06, 0.13),
    "neck": (0.0, 0.22, 0.0), "left_collar": (0.07, 0.13, 0.0), "right_collar": (-0.07, 0.13, 0.0),
    "head": (0.0, 0.1, 0.04), "left_shoulder": (0.13, 0.04, 0.0), "right_shoulder": (-0.13, 0.04, 0.0),
    "left_elbow": (0.27, 0.0, 0.0), "right_elbow": (-0.27, 0.0, 0.0),
    "left_wrist": (0.26, 0.0, 0.0), "right_wrist": (-0.26, 0.0, 0.0),
    "left_hand": (0.09, 0.0, 0.0), "right_hand": (-0.09, 0.0, 0.0),
}  # fmt: skip


def rest_joints() -> torch.Tensor:
    pos = []
    for j, name in enumerate(SMPL_JOINT_NAMES):
        off = torch.tensor(_OFFSETS[name])
        pos.append(off if SMPL_PARENTS[j] < 0 else pos[SMPL_PARENTS[j]] + off)
    return torch.stack(pos)


REST = rest_joints()


def world_joints(motion) -> torch.Tensor:
    """[F, 24, 3] joint positions of the first person (SMPL body types only)."""
    p = motion.persons[0]
    rot = torch.cat([p.global_orient[:, None], p.body_pose], dim=1)
    joints, _ = forward_kinematics(rot, REST)
    return joints + p.transl[:, None]


def max_acceleration(motion) -> float:
    """Largest joint acceleration (m/s^2) by second differences."""
    joints = world_joints(motion)
    return ((joints[2:] - 2 * joints[1:-1] + joints[:-2]).norm(dim=-1) * motion.fps**2).max().item()


# Upper bounds of joint acceleration: limbs swing fast in run and jump (arm swing, push-off).
ACCEL_LIMIT = {"idle": 20.0, "walk": 45.0, "turn": 55.0, "wave": 70.0, "run": 110.0, "jump": 160.0}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_shapes_finite_smooth(kind):
    m = procedural_motion(kind, frames=48, fps=24.0)
    p = m.persons[0]
    assert m.fps == 24.0 and p.num_frames == 48 and p.body_pose.shape == (48, 23, 3, 3)
    assert all(torch.isfinite(t).all() for t in p.frame_tensors().values())
    # smooth: bounded acceleration, and no kinks (a velocity jump would show as an acceleration
    # growing with the frame rate)
    slow, fast = max_acceleration(m), max_acceleration(procedural_motion(kind, frames=193, fps=96.0))
    assert slow < ACCEL_LIMIT[kind] and fast < ACCEL_LIMIT[kind], (slow, fast)
    assert fast < 1.3 * slow + 5.0, (slow, fast)
    # feet stay roughly at or above the ground: ankles at least at their rest height over y = 0
    joints = world_joints(m)
    ground = REST[J["left_ankle"], 1] + REST_SOLE_DEPTH_M
    feet = joints[:, [J["left_ankle"], J["right_ankle"]], 1]
    assert feet.min() > ground - 0.05


@pytest.mark.parametrize("body_type", ["smplx", "smplh", "smpl"])
def test_body_types(body_type):
    p = procedural_motion("walk", frames=10, body_type=body_type).persons[0]
    assert p.body_type == body_type and p.body_pose.shape[1] == (23 if body_type == "smpl" else 21)


def test_walk_moves_forward_by_stride_without_sliding():
    fps, frames = 30.0, 91  # 3 s
    m = procedural_motion("walk", frames=frames, fps=fps)
    joints = world_joints(m)
    pelvis = joints[:, 0]
    distance = (pelvis[-1, 2] - pelvis[0, 2]).item()
    assert 2.4 < distance < 5.0  # about 1.1-1.5 m/s
    assert abs(pelvis[-1, 0] - pelvis[0, 0]) < 0.1  # straight along +z
    # arms swing opposite to legs: left wrist forward while the left ankle is back
    left_leg = joints[:, J["left_ankle"], 2] - pelvis[:, 2]
    left_arm = joints[:, J["left_wrist"], 2] - pelvis[:, 2]
    assert torch.corrcoef(torch.stack([left_leg, left_arm]))[0, 1] < -0.5
    # the supporting point (lowest heel or toe) barely slides, compared with the walking speed
    contacts = joints[:, [J["left_ankle"], J["left_foot"], J["right_ankle"], J["right_foot"]]]
    low = contacts[..., 1].argmin(dim=1)
    support = contacts[torch.arange(frames), low]
    speed = (support[1:, [0, 2]] - support[:-1, [0, 2]]).norm(dim=-1) * fps
    same = low[1:] == low[:-1]
    assert speed[same].median() < 0.2 * distance / 3.0


def test_wave_raises_hand_above_head():
    for hand in ("right", "left"):
        joints = world_joints(procedural_motion("wave", frames=48, fps=24.0, hand=hand))
        mid = slice(16, 32)
        assert (joints[mid, J[f"{hand}_wrist"], 1] > joints[mid, J["head"], 1]).all()
        other = "left" if hand == "right" else "right"
        assert (joints[:, J[f"{other}_wrist"], 1] < joints[:, J["spine1"], 1]).all()  # relaxed arm down


def test_arms_down_in_idle():
    joints = world_joints(procedural_motion("idle", frames=12))
    for side in ("left", "right"):
        assert (joints[:, J[f"{side}_wrist"], 1] < joints[:, J[f"{side}_shoulder"], 1] - 0.4).all()


def test_jump_lifts_pelvis_and_lands():
    m = procedural_motion("jump", frames=48, fps=24.0)
    y = m.persons[0].transl[:, 1] - REST_SOLE_DEPTH_M  # 0 when standing
    assert y.max() > 0.2 and y.min() < -0.1  # flight above standing height, crouch below it
    assert abs(y[-1] - y[0]) < 0.02


def test_turn_turns():
    p = procedural_motion("turn", frames=48, angle_deg=90.0).persons[0]
    forward = p.global_orient[:, :, 2]  # body +z axis in the world
    assert forward[0, 2] > 0.95 and forward[-1, 0] > 0.95  # +z turned towards +x


def test_bad_arguments():
    with pytest.raises(MotionError, match="unknown kind"):
        procedural_motion("moonwalk")
    with pytest.raises(MotionError, match="body type"):
        procedural_motion("walk", body_type="robot")
    with pytest.raises(MotionError, match="positive"):
        procedural_motion("walk", frames=0)


@pytest.mark.parametrize("kind", ["idle", "walk", "turn"])
def test_soles_on_the_ground_with_the_mannequin(kind):
    from amg_model.smpl.body import load_body_model

    motion = procedural_motion(kind, frames=24, fps=12.0)
    vertices = load_body_model("mannequin").pose_person(motion.persons[0]).vertices
    lowest = vertices[..., 1].amin(dim=1)  # [F] lowest point of the body per frame
    assert lowest.abs().max() < 0.04, lowest
