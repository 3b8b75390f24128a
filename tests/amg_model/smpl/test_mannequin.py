"""The built-in mannequin: proportions, skinning, shape parameters, interface."""

import math

import pytest
import roma
import torch

from amg_model.errors import BodyModelError
from amg_model.smpl.body import load_body_model, vertex_regions
from amg_model.smpl.kinematics import SMPL_JOINT_NAMES, SMPL_PARENTS, forward_kinematics
from amg_model.smpl.landmarks import REGION_HAIR, REGION_NAMES, REGION_SKIN_HEAD
from amg_model.smpl.mannequin import REST_PELVIS, Mannequin
from amg_model.smpl.motion import Person

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def body():
    return load_body_model("mannequin")


def _identity(n, j, dtype=torch.float32):
    return torch.eye(3, dtype=dtype).expand(n, j, 3, 3).clone()


def _pose(body, rotvecs=None, betas=None, transl=None, n=1):
    pose = torch.zeros(n, 23, 3)
    for name, rv in (rotvecs or {}).items():
        pose[:, J[name] - 1] = torch.tensor(rv, dtype=torch.float32)
    return body(
        torch.zeros(n, 10) if betas is None else betas,
        torch.eye(3).expand(n, 3, 3),
        roma.rotvec_to_rotmat(pose),
        torch.zeros(n, 3) if transl is None else transl,
    )


def _descendants(joint):
    out = {joint}
    for j, p in enumerate(SMPL_PARENTS):
        if p in out:
            out.add(j)
    return out


def test_interface_and_not_smpl(body):
    assert isinstance(body, Mannequin)
    assert (body.body_type, body.gender, body.num_betas, body.num_body_joints) == (
        "mannequin",
        "neutral",
        10,
        23,
    )
    assert 2000 < body.num_vertices < 6890  # small enough to pad into the synthetic SMPL files
    assert body.faces.dtype == torch.long and body.faces.shape[1] == 3
    assert int(body.faces.max()) == body.num_vertices - 1
    assert body.lbs_weights.shape == (body.num_vertices, 24)
    assert "NOT SMPL" in repr(body) and "NOT SMPL" in Mannequin.__doc__


def test_rest_pose_proportions(body):
    out = _pose(body)
    v, joints = out.vertices[0], out.joints[0]
    assert v.shape == (body.num_vertices, 3) and joints.shape == (24, 3)
    assert abs(float(v[:, 1].max() - v[:, 1].min()) - 1.70) < 0.02  # height
    assert abs(float(v[:, 1].min()) + 1.15) < 0.02  # soles where SMPL's are, pelvis near the origin
    torch.testing.assert_close(joints[0], torch.tensor(REST_PELVIS, dtype=joints.dtype))
    assert 1.6 < float(v[:, 0].max() - v[:, 0].min()) < 1.9  # arm span close to the height
    torch.testing.assert_close(joints, body.rest_joints(torch.zeros(1, 10))[0])
    # facing +z, the person's left on +x, joints above their children in the legs
    nose, r_eye, l_eye, r_ear, l_ear = out.face_landmarks[0]
    assert nose[2] > r_ear[2] + 0.08 and l_eye[0] > 0 > r_eye[0] and l_ear[0] > 0 > r_ear[0]
    assert joints[J["left_wrist"], 0] > 0.6 and joints[J["right_wrist"], 0] < -0.6
    assert joints[J["left_hip"], 1] > joints[J["left_knee"], 1] > joints[J["left_ankle"], 1]
    assert joints[J["head"], 1] > joints[J["neck"], 1] > joints[J["spine3"], 1] > joints[J["pelvis"], 1]


def test_weights_are_smooth_partitions_of_unity(body):
    w = body.lbs_weights
    assert float(w.min()) >= 0.0
    torch.testing.assert_close(w.sum(1), torch.ones(body.num_vertices))
    for a, b in (("left_shoulder", "left_elbow"), ("right_hip", "right_knee"), ("spine2", "spine3")):
        blended = (w[:, J[a]] > 0.2) & (w[:, J[b]] > 0.2)
        assert int(blended.sum()) >= 8, f"no blending across {b}"


def test_bending_a_joint_moves_only_its_subtree_and_keeps_the_mesh_intact(body):
    rest = _pose(body)
    bent = _pose(body, {"left_elbow": [0.0, -math.pi / 2, 0.0], "right_knee": [math.pi / 2, 0.0, 0.0]})
    moving = _descendants(J["left_elbow"]) | _descendants(J["right_knee"])
    influenced = body.lbs_weights[:, sorted(moving)].sum(1) > 0
    moved = (bent.vertices[0] - rest.vertices[0]).norm(dim=1) > 1e-6
    assert bool((moved <= influenced).all()) and int(moved.sum()) > 200
    # forearm points forward (+z) after bending the left elbow by -90 degrees about y
    wrist = bent.joints[0, J["left_wrist"]] - bent.joints[0, J["left_elbow"]]
    assert wrist[2] > 0.2 and abs(float(wrist[0])) < 0.02
    # no tearing: no edge stretches to more than twice its rest length
    f = body.faces
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])

    def lengths(v):
        return (v[edges[:, 0]] - v[edges[:, 1]]).norm(dim=1)

    assert float((lengths(bent.vertices[0]) / lengths(rest.vertices[0]).clamp_min(1e-6)).max()) < 2.0


def test_joints_follow_forward_kinematics_and_transl(body):
    rotvecs = {"spine1": [0.2, 0.1, 0.0], "left_shoulder": [0.0, 0.0, -1.0], "neck": [0.3, 0.0, 0.0]}
    transl = torch.tensor([[0.5, -0.2, 1.0]])
    out = _pose(body, rotvecs, transl=transl)
    pose = torch.zeros(1, 24, 3)
    for name, rv in rotvecs.items():
        pose[0, J[name]] = torch.tensor(rv)
    expected, _ = forward_kinematics(roma.rotvec_to_rotmat(pose), body.rest_joints(torch.zeros(1, 10)))
    torch.testing.assert_close(out.joints, expected + transl[:, None])
    rest = _pose(body)
    torch.testing.assert_close(out.joints[0, 0], rest.joints[0, 0] + transl[0])  # pelvis stays at rest


def test_betas_scale_height_and_girth(body):
    betas = torch.zeros(3, 10)
    betas[1, 0] = 1.0
    betas[2, 1] = 2.0
    v = _pose(body, betas=betas, n=3).vertices
    height = v[..., 1].max(dim=1).values - v[..., 1].min(dim=1).values
    torch.testing.assert_close(height[1] / height[0], torch.tensor(math.exp(0.06)))
    waist = (v[..., 1] + 0.09).abs() < 0.02
    width = torch.stack([v[i, waist[i], 0].abs().max() for i in range(3)])
    assert width[2] > width[0] * 1.15 and abs(float(height[2] - height[0])) < 0.01


def test_batched_float64_and_differentiable(body):
    b64 = Mannequin().to(torch.float64)
    pose = torch.zeros(2, 23, 3, dtype=torch.float64, requires_grad=True)
    betas = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)  # shorter betas are padded
    out = b64(betas, torch.eye(3, dtype=torch.float64).expand(2, 3, 3), roma.rotvec_to_rotmat(pose),
              torch.zeros(2, 3, dtype=torch.float64))  # fmt: skip
    assert out.vertices.dtype == torch.float64 and out.vertices.shape[0] == 2
    (out.vertices[..., 1].sum() + out.joints.square().sum()).backward()
    assert pose.grad is not None and float(pose.grad.abs().sum()) > 0
    assert float(betas.grad[:, :2].abs().sum()) > 0


def test_bad_shapes_raise_body_model_error(body):
    with pytest.raises(BodyModelError, match="body_pose has shape"):
        body(torch.zeros(1, 10), torch.eye(3)[None], _identity(1, 21), torch.zeros(1, 3))
    with pytest.raises(BodyModelError, match="betas"):
        body(torch.zeros(3, 10), torch.eye(3).expand(2, 3, 3), _identity(2, 23), torch.zeros(2, 3))


def test_pose_person_adapts_smplh_poses(body):
    person = Person(
        body_type="smplh", gender="neutral", betas=torch.zeros(16),
        global_orient=torch.eye(3).expand(4, 3, 3), body_pose=_identity(4, 21), transl=torch.zeros(4, 3),
        left_hand_pose=_identity(4, 15), right_hand_pose=_identity(4, 15),
    )  # fmt: skip
    out = body.pose_person(person, frames=slice(1, 3))
    assert out.vertices.shape == (2, body.num_vertices, 3)
    torch.testing.assert_close(out.joints[0], _pose(body).joints[0])


def test_vertex_regions(body):
    regions = vertex_regions(body)
    assert regions.shape == (body.num_vertices,) and regions.dtype == torch.long
    assert set(regions.tolist()) == set(range(len(REGION_NAMES)))
    rest = _pose(body)
    v, lm = rest.vertices[0], rest.face_landmarks[0]
    hair, face = v[regions == REGION_HAIR], v[regions == REGION_SKIN_HEAD]
    front = hair[:, 2] > lm[3:, 2].mean() + 0.03  # in front of the ears
    assert int(front.sum()) > 5 and float(hair[front, 1].min()) > float(lm[1:3, 1].mean())  # above the eyes
    assert float(hair[:, 1].mean()) > float(lm[0, 1])
    assert bool((regions[body.landmark_ids] == REGION_SKIN_HEAD).all())  # the face is skin
    assert len(face) > 50
