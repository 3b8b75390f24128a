"""SMPL-family body models from synthetic official-layout files, and load_body_model errors."""

import math

import numpy as np
import pytest
import roma
import smplx.body_models
import torch

from amg_model.errors import BodyModelError
from amg_model.smpl.body import BodyOutput, load_body_model, read_body_model_file, vertex_regions
from amg_model.smpl.kinematics import SMPL_JOINT_NAMES
from amg_model.smpl.landmarks import REGION_HAIR, REGION_NAMES
from amg_model.smpl.mannequin import Mannequin
from tests.fixtures.smpl_files import dump_py2_pickle, smpl_arrays, write_smpl_npz, write_smpl_pkl

KINDS = ("smpl", "smplh", "smplx")
J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("smpl")
    return {
        (kind, ext): (write_smpl_pkl if ext == "pkl" else write_smpl_npz)(
            root / f"{kind.upper()}_NEUTRAL.{ext}", kind
        )
        for kind in KINDS
        for ext in ("pkl", "npz")
    }


def _refuse(*args, **kwargs):
    raise AssertionError("smplx must not unpickle the user's file")


@pytest.fixture(scope="module")
def bodies(files):
    """Every synthetic file loaded, with smplx's own pickle.load disabled throughout."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(smplx.body_models.pickle, "load", _refuse)
        return {key: load_body_model(path) for key, path in files.items()}


@pytest.fixture(scope="module")
def mannequin():
    return Mannequin()


def _inputs(kind, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    jb = 23 if kind == "smpl" else 21
    betas = torch.zeros(n, 10)
    betas[:, :2] = 0.5 * torch.randn(n, 2, generator=g)
    return (
        betas,
        roma.rotvec_to_rotmat(0.3 * torch.randn(n, 3, generator=g)),
        roma.rotvec_to_rotmat(0.3 * torch.randn(n, jb, 3, generator=g)),
        torch.randn(n, 3, generator=g),
    )


@pytest.mark.parametrize("kind", KINDS)
def test_layout_detected_and_interface(bodies, kind):
    body = bodies[(kind, "pkl")]
    n_verts, n_joints = {"smpl": (6890, 24), "smplh": (6890, 52), "smplx": (10475, 55)}[kind]
    assert (body.body_type, body.gender, body.num_betas) == (kind, "neutral", 10)
    assert body.num_body_joints == (23 if kind == "smpl" else 21)
    assert body.num_vertices == n_verts and body.lbs_weights.shape == (n_verts, n_joints)
    assert body.faces.dtype == torch.long and body.faces.shape[1] == 3
    out = body(*_inputs(kind))
    assert isinstance(out, BodyOutput)
    assert out.vertices.shape == (2, n_verts, 3) and out.joints.shape == (2, 24, 3)
    assert out.face_landmarks.shape == (2, 5, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_pkl_and_npz_give_the_same_body(bodies, kind):
    args = _inputs(kind)
    a, b = bodies[(kind, "pkl")](*args), bodies[(kind, "npz")](*args)
    torch.testing.assert_close(a.vertices, b.vertices)
    torch.testing.assert_close(a.joints, b.joints)


@pytest.mark.parametrize("kind", KINDS)
def test_joints_and_landmarks_follow_the_skeleton(bodies, mannequin, kind):
    """The synthetic files carry the mannequin's skeleton, weights and landmarks: same pose, same body."""
    betas, orient, pose, transl = _inputs(kind)
    betas = 0.3 * betas
    body = bodies[(kind, "npz")]
    out = body(betas, orient, pose, transl)
    full = pose if kind == "smpl" else torch.cat([pose, torch.eye(3).expand(2, 2, 3, 3)], dim=1)
    ref = mannequin(betas, orient, full, transl)
    # betas act linearly in the files and exponentially in the mannequin: millimetres apart
    torch.testing.assert_close(out.joints, ref.joints, atol=3e-3, rtol=0)
    torch.testing.assert_close(out.face_landmarks, ref.face_landmarks, atol=3e-3, rtol=0)
    torch.testing.assert_close(body.rest_joints(betas), mannequin.rest_joints(betas), atol=3e-3, rtol=0)
    torch.testing.assert_close(out.joints[:, 0], body.rest_joints(betas)[:, 0] + transl)


@pytest.mark.parametrize("kind", KINDS)
def test_posing_moves_the_right_vertices(bodies, kind):
    body = bodies[(kind, "pkl")]
    jb = body.num_body_joints
    eye = torch.eye(3)[None]
    rest = body(torch.zeros(1, 10), eye, eye.expand(1, jb, 3, 3), torch.zeros(1, 3))
    pose = eye.expand(1, jb, 3, 3).clone()
    pose[0, J["left_elbow"] - 1] = roma.rotvec_to_rotmat(torch.tensor([0.0, -math.pi / 2, 0.0]))
    bent = body(torch.zeros(1, 10), eye, pose, torch.zeros(1, 3))
    moved = (bent.vertices - rest.vertices)[0].norm(dim=1) > 1e-5
    parents = body.layer.parents.tolist()
    subtree = {J["left_elbow"]}
    for j, p in enumerate(parents):
        if p in subtree:
            subtree.add(j)
    influenced = body.lbs_weights[:, sorted(subtree)].sum(1) > 0
    assert int(moved.sum()) > 100 and bool((moved <= influenced).all())
    forearm = bent.joints[0, J["left_wrist"]] - bent.joints[0, J["left_elbow"]]
    assert forearm[2] > 0.2  # the forearm now points forward


def test_hands_and_expression_are_used(bodies):
    smplh, smplx = bodies[("smplh", "npz")], bodies[("smplx", "npz")]
    eye = torch.eye(3)[None]
    hand = eye.expand(1, 15, 3, 3).clone()
    hand[0, 1] = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, 1.0]))  # left_middle1
    for body in (smplh, smplx):
        args = (torch.zeros(1, 10), eye, eye.expand(1, 21, 3, 3), torch.zeros(1, 3))
        a, b = body(*args), body(*args, left_hand_pose=hand)
        assert float((a.vertices - b.vertices).norm(dim=-1).max()) > 0.01
        torch.testing.assert_close(a.joints[:, :22], b.joints[:, :22])
    args = (torch.zeros(1, 10), eye, eye.expand(1, 21, 3, 3), torch.zeros(1, 3))
    expression = torch.zeros(1, 10)
    expression[0, 0] = 1.0
    moved = smplx(*args, expression=expression).face_landmarks - smplx(*args).face_landmarks
    torch.testing.assert_close(moved[0, 0], torch.tensor([0.0, 0.0, 0.01]))  # the nose


def test_differentiable_and_float64(files):
    body = load_body_model(files[("smpl", "npz")]).to(torch.float64)
    rv = torch.zeros(1, 23, 3, dtype=torch.float64, requires_grad=True)
    betas = torch.zeros(1, 10, dtype=torch.float64, requires_grad=True)
    eye = torch.eye(3, dtype=torch.float64)[None]
    out = body(betas, eye, roma.rotvec_to_rotmat(rv), torch.zeros(1, 3, dtype=torch.float64))
    assert out.vertices.dtype == torch.float64
    (out.joints[..., 2].sum() + out.vertices.square().mean()).backward()
    assert float(rv.grad.abs().sum()) > 0 and float(betas.grad.abs().sum()) > 0


def test_more_betas_gender_from_name_and_default(tmp_path):
    path = write_smpl_npz(tmp_path / "SMPLH_FEMALE.npz", "smplh")  # 16 betas in the file
    body = load_body_model(path, num_betas=16)
    assert body.num_betas == 16 and body.gender == "female"
    assert load_body_model(path, num_betas=300).num_betas == 16
    assert isinstance(load_body_model(), Mannequin)


def test_smplx_never_unpickles_the_file(bodies):
    assert {key: body.body_type for key, body in bodies.items()} == {key: key[0] for key in bodies}


def test_vertex_regions_of_an_smpl_file(bodies):
    regions = vertex_regions(bodies[("smpl", "pkl")])
    used = set(regions.tolist())
    assert used == set(range(len(REGION_NAMES))) and int((regions == REGION_HAIR).sum()) > 20


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda(files):
    body = load_body_model(files[("smpl", "npz")], device="cuda")
    out = body(*[t.cuda() for t in _inputs("smpl")])
    assert out.vertices.is_cuda


def test_errors_are_clear(tmp_path):
    with pytest.raises(BodyModelError, match="not found.*ComfyUI/models/smpl"):
        load_body_model(tmp_path / "SMPL_NEUTRAL.pkl")
    (tmp_path / "model.obj").write_text("v 0 0 0")
    with pytest.raises(BodyModelError, match="unsupported body model file type"):
        load_body_model(tmp_path / "model.obj")
    np.savez(tmp_path / "motion.npz", poses=np.zeros((3, 72)))
    with pytest.raises(BodyModelError, match="not an SMPL/SMPL-H/SMPL-X body model file"):
        load_body_model(tmp_path / "motion.npz")
    arrays = smpl_arrays("smpl")
    mano = {
        k: (v[:778] if k in ("v_template", "weights", "shapedirs", "posedirs") else v)
        for k, v in arrays.items()
    }
    np.savez(tmp_path / "mano.npz", **mano)
    with pytest.raises(BodyModelError, match="unknown body model layout.*778 vertices"):
        load_body_model(tmp_path / "mano.npz")
    damaged = dict(arrays, posedirs=arrays["posedirs"][:, :, :100])
    np.savez(tmp_path / "damaged.npz", **damaged)
    with pytest.raises(BodyModelError, match="posedirs has shape"):
        load_body_model(tmp_path / "damaged.npz")
    good = (write_smpl_npz(tmp_path / "good.npz", "smpl")).read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 3])
    with pytest.raises(BodyModelError, match="cut.npz: truncated"):
        load_body_model(tmp_path / "cut.npz")
    good = (write_smpl_pkl(tmp_path / "good.pkl", "smpl")).read_bytes()
    (tmp_path / "cut.pkl").write_bytes(good[: len(good) // 3])
    with pytest.raises(BodyModelError, match="cut.pkl: is truncated"):
        load_body_model(tmp_path / "cut.pkl")
    dump_py2_pickle([1, 2, 3], tmp_path / "list.pkl")
    with pytest.raises(BodyModelError, match="not a body model file"):
        load_body_model(tmp_path / "list.pkl")
    with pytest.raises(BodyModelError, match="gender"):
        load_body_model("mannequin", gender="robot")


def test_read_body_model_file_densifies_official_pickles(files):
    kind, arrays = read_body_model_file(files[("smpl", "pkl")])
    ref = smpl_arrays("smpl")
    assert kind == "smpl" and arrays["shapedirs"].shape == (6890, 3, 10)
    np.testing.assert_array_equal(arrays["J_regressor"], ref["J_regressor"])
    np.testing.assert_array_equal(arrays["shapedirs"], ref["shapedirs"])
