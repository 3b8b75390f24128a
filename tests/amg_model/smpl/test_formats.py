"""Motion file readers and the project format, on synthetic files written by the tests."""

import json
import pickle

import numpy as np
import pytest
import roma
import torch

from amg_model.errors import MotionError
from amg_model.smpl.formats import load_motion, save_motion
from amg_model.smpl.formats.convert import PELVIS_REST, Z_UP_TO_Y_UP
from amg_model.smpl.motion import Motion, Person


def random_person(frames=5, body_type="smpl", hands=False, face=False, seed=0, name="a"):
    g = torch.Generator().manual_seed(seed)
    joints = 23 if body_type in ("smpl", "mannequin") else 21

    def rot(*shape):
        return roma.rotvec_to_rotmat(torch.randn(*shape, 3, generator=g) * 0.5)

    return Person(
        body_type=body_type,
        gender="female",
        betas=torch.randn(10, generator=g),
        global_orient=rot(frames),
        body_pose=rot(frames, joints),
        transl=torch.randn(frames, 3, generator=g),
        left_hand_pose=rot(frames, 15) if hands else None,
        right_hand_pose=rot(frames, 15) if hands else None,
        jaw_pose=rot(frames) if face else None,
        expression=torch.randn(frames, 10, generator=g) if face else None,
        name=name,
    )


def assert_person_close(a: Person, b: Person, atol=1e-5):
    assert (a.body_type, a.gender, a.name) == (b.body_type, b.gender, b.name)
    torch.testing.assert_close(a.betas, b.betas, atol=atol, rtol=0)
    ta, tb = a.frame_tensors(), b.frame_tensors()
    assert ta.keys() == tb.keys()
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], atol=atol, rtol=0)


# ---- project format ------------------------------------------------------------------------


def test_project_npz_round_trip(tmp_path):
    motion = Motion(
        persons=[
            random_person(6, "smpl", seed=1, name="p1"),
            random_person(6, "smplx", hands=True, face=True, seed=2, name="p2"),
        ],
        fps=24.0,
    )
    path = save_motion(motion, tmp_path / "m.npz")
    back = load_motion(path)
    assert back.fps == 24.0 and len(back.persons) == 2
    for a, b in zip(motion.persons, back.persons, strict=True):
        assert_person_close(a, b)
    with np.load(path, allow_pickle=False) as npz:
        assert int(npz["format_version"]) == 1


def test_save_rejects_other_suffix_and_invalid_motion(tmp_path):
    with pytest.raises(MotionError, match="m.json"):
        save_motion(Motion([random_person()]), tmp_path / "m.json")
    bad = random_person()
    bad.transl = bad.transl[:2]
    with pytest.raises(MotionError, match="bad.npz"):
        save_motion(Motion([bad]), tmp_path / "bad.npz")


def test_newer_version_refused(tmp_path):
    path = save_motion(Motion([random_person()]), tmp_path / "m.npz")
    data = dict(np.load(path, allow_pickle=False))
    data["format_version"] = np.array(99)
    np.savez(tmp_path / "new.npz", **data)
    with pytest.raises(MotionError, match="new.npz.*version 99"):
        load_motion(tmp_path / "new.npz")


# ---- AMASS --------------------------------------------------------------------------------


def test_amass_z_up_to_y_up(tmp_path):
    f = 4
    poses = np.zeros((f, 156), np.float32)
    poses[:, 3:6] = [0.3, 0.0, 0.0]  # left hip
    trans = np.tile(np.array([[1.0, 2.0, 3.0]], np.float32), (f, 1))
    np.savez(
        tmp_path / "a.npz",
        poses=poses,
        trans=trans,
        betas=np.zeros(16, np.float32),
        gender=np.array("male"),
        mocap_framerate=np.array(120.0),
    )
    m = load_motion(tmp_path / "a.npz")
    p = m.persons[0]
    assert (m.fps, p.body_type, p.gender, p.num_frames) == (120.0, "smplh", "male", f)
    assert p.left_hand_pose.shape == (f, 15, 3, 3) and p.betas.shape == (16,)
    # identity root in z-up becomes the -90 deg x rotation; the pelvis (trans + J0) is rotated.
    torch.testing.assert_close(p.global_orient[0], Z_UP_TO_Y_UP)
    j0 = torch.tensor(PELVIS_REST["smplh"])
    expected = Z_UP_TO_Y_UP @ (torch.tensor([1.0, 2.0, 3.0]) + j0) - j0
    torch.testing.assert_close(p.transl[0], expected)
    # z-up height 3 becomes y-up height about 3
    assert abs(p.transl[0, 1].item() + j0[1].item() - 3.0 - j0[2].item()) < 1e-5


def test_amass_smplx_variant(tmp_path):
    np.savez(
        tmp_path / "x.npz",
        poses=np.zeros((3, 165), np.float32),
        trans=np.zeros((3, 3), np.float32),
        gender=np.array(b"female"),
        mocap_frame_rate=np.array(60.0),
    )
    p = load_motion(tmp_path / "x.npz").persons[0]
    assert p.body_type == "smplx" and p.jaw_pose.shape == (3, 3, 3) and p.gender == "female"


def test_amass_bad_width(tmp_path):
    np.savez(
        tmp_path / "w.npz",
        poses=np.zeros((3, 150), np.float32),
        trans=np.zeros((3, 3)),
        mocap_framerate=np.array(30.0),
    )
    with pytest.raises(MotionError, match="w.npz.*156"):
        load_motion(tmp_path / "w.npz")


# ---- plain SMPL parameters ------------------------------------------------------------------


def test_smpl_params_npz_axis_angle(tmp_path):
    f = 5
    aa = np.random.default_rng(0).normal(size=(f, 69)).astype(np.float32) * 0.2
    np.savez(
        tmp_path / "s.npz",
        global_orient=np.zeros((f, 3), np.float32),
        body_pose=aa,
        transl=np.ones((f, 3), np.float32),
        betas=np.zeros((1, 10), np.float32),
    )
    m = load_motion(tmp_path / "s.npz", fps=25)
    p = m.persons[0]
    assert m.fps == 25 and p.body_type == "smpl" and p.body_pose.shape == (f, 23, 3, 3)
    torch.testing.assert_close(p.body_pose, roma.rotvec_to_rotmat(torch.from_numpy(aa).reshape(f, 23, 3)))
    assert load_motion(tmp_path / "s.npz", body_type="mannequin").persons[0].body_type == "mannequin"


def test_smpl_params_poses72_aliases_json(tmp_path):
    poses = np.zeros((3, 72))
    poses[:, 0] = 0.5
    data = {
        "smpl_poses": poses.tolist(),
        "smpl_trans": np.zeros((3, 3)).tolist(),
        "shape": [0.1] * 10,
        "fps": 12,
    }
    (tmp_path / "s.json").write_text(json.dumps(data))
    m = load_motion(tmp_path / "s.json")
    assert m.fps == 12 and m.persons[0].body_pose.shape == (3, 23, 3, 3)
    torch.testing.assert_close(
        m.persons[0].global_orient[0], roma.rotvec_to_rotmat(torch.tensor([0.5, 0, 0]))
    )


def test_smpl_params_pt_matrices_and_frame_list(tmp_path):
    person = random_person(4, "smplh")
    torch.save(
        {
            "global_orient": person.global_orient[:, None],
            "body_pose": person.body_pose,
            "transl": person.transl,
            "betas": person.betas,
        },
        tmp_path / "m.pt",
    )
    p = load_motion(tmp_path / "m.pt").persons[0]
    assert p.body_type == "smplh"
    torch.testing.assert_close(p.body_pose, person.body_pose, atol=1e-5, rtol=0)
    frames = [
        {
            "root_orient": roma.rotmat_to_rotvec(person.global_orient[i]).tolist(),
            "pose_body": roma.rotmat_to_rotvec(person.body_pose[i]).reshape(-1).tolist(),
            "trans": person.transl[i].tolist(),
        }
        for i in range(4)
    ]
    (tmp_path / "frames.json").write_text(json.dumps(frames))
    q = load_motion(tmp_path / "frames.json").persons[0]
    torch.testing.assert_close(q.global_orient, person.global_orient, atol=1e-5, rtol=0)
    torch.testing.assert_close(q.transl, person.transl)


def test_smpl_params_z_up_option(tmp_path):
    np.savez(
        tmp_path / "z.npz",
        global_orient=np.zeros((2, 3)),
        body_pose=np.zeros((2, 63)),
        transl=np.zeros((2, 3)),
    )
    p = load_motion(tmp_path / "z.npz", up_axis="z").persons[0]
    torch.testing.assert_close(p.global_orient[0], Z_UP_TO_Y_UP)


# ---- PHALP / 4D-Humans ----------------------------------------------------------------------


def phalp_record(t, tids, ages, poses):
    return {
        "time": t,
        "tid": tids,
        "tracked_time": ages,
        "shot": 0,
        "smpl": [
            {
                "global_orient": np.eye(3, dtype=np.float32)[None],
                "body_pose": np.tile(np.eye(3, dtype=np.float32), (23, 1, 1)) if p is None else p,
                "betas": np.zeros(10, np.float32),
            }
            for p in poses
        ],
        "camera": [np.array([0.0, 0.0, 5.0 + t], np.float32) for _ in tids],
        "3d_joints": [np.zeros((45, 3)) for _ in tids],
    }


def test_phalp_tracks_gaps_and_camera_frame(tmp_path):
    bent = roma.rotvec_to_rotmat(torch.tensor([[1.0, 0, 0]] * 23)).numpy()
    data = {
        "img_000.jpg": phalp_record(0, [1], [0], [None]),
        "img_001.jpg": phalp_record(1, [1, 2], [1, 0], [None, None]),  # track 1 only predicted
        "img_002.jpg": phalp_record(2, [1, 2], [0, 0], [bent, None]),
        "img_003.jpg": phalp_record(3, [], [], []),  # nobody
    }
    (tmp_path / "demo.pkl").write_bytes(pickle.dumps(data))
    m = load_motion(tmp_path / "demo.pkl", fps=25)
    assert m.fps == 25 and [p.name for p in m.persons] == ["1", "2"]
    assert all(p.num_frames == 4 for p in m.persons)
    one = m.persons[0]
    # frame 1 is interpolated half-way between identity and 1 rad about x
    angle = roma.rotmat_to_rotvec(one.body_pose[1, 0])
    torch.testing.assert_close(angle, torch.tensor([0.5, 0.0, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(one.body_pose[3], one.body_pose[2])  # held after the last observation
    # camera frame (y down, z forward) -> y-up: the body 5 m in front of the camera is at z = -5 - ...
    assert one.transl[0, 2] < -4.9
    torch.testing.assert_close(one.global_orient[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])))
    held = load_motion(tmp_path / "demo.pkl", gaps="hold").persons[0]
    torch.testing.assert_close(held.body_pose[1], held.body_pose[0])
    only = load_motion(tmp_path / "demo.pkl", tracks=[2])
    assert [p.name for p in only.persons] == ["2"]
    with pytest.raises(MotionError, match="demo.pkl.*track with id 7"):
        load_motion(tmp_path / "demo.pkl", tracks=[7])


def test_phalp_joblib_compressed_refused(tmp_path):
    import zlib

    (tmp_path / "j.pkl").write_bytes(zlib.compress(pickle.dumps({"a": 1}), 3))
    with pytest.raises(MotionError, match="j.pkl.*joblib.*convert"):
        load_motion(tmp_path / "j.pkl")
    # uncompressed joblib: numpy arrays are joblib NumpyArrayWrapper objects
    (tmp_path / "u.pkl").write_bytes(b"\x80\x04cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81.")
    with pytest.raises(MotionError, match="u.pkl.*joblib.*convert"):
        load_motion(tmp_path / "u.pkl")


def test_pickle_with_code_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("boom",))

    (tmp_path / "e.pkl").write_bytes(pickle.dumps({"poses": Evil()}))
    with pytest.raises(MotionError, match="e.pkl"):
        load_motion(tmp_path / "e.pkl")


# ---- GVHMR / MotionDiff ---------------------------------------------------------------------


def test_gvhmr_world_and_camera(tmp_path):
    f = 3
    params = {
        "global_orient": torch.zeros(f, 3),
        "body_pose": torch.zeros(f, 63),
        "transl": torch.tensor([[0.0, 1.0, 4.0]] * f),
        "betas": torch.zeros(f, 10),
    }
    torch.save(
        {"smpl_params_global": params, "smpl_params_incam": params, "K_fullimg": torch.eye(3)[None]},
        tmp_path / "hmr4d_results.pt",
    )
    world = load_motion(tmp_path / "hmr4d_results.pt")
    p = world.persons[0]
    assert p.body_type == "smplx" and world.fps == 30.0
    torch.testing.assert_close(p.transl[0], torch.tensor([0.0, 1.0, 4.0]))
    cam = load_motion(tmp_path / "hmr4d_results.pt", frame="camera", fps=24).persons[0]
    j0 = torch.tensor(PELVIS_REST["smplx"])
    pelvis = cam.transl[0] + j0  # y down -> up, forward -> -z: the pelvis is mirrored in y and z
    torch.testing.assert_close(pelvis, torch.tensor([1.0, -1.0, -1.0]) * (torch.tensor([0.0, 1.0, 4.0]) + j0))


def test_motiondiff_thetas(tmp_path):
    f = 4
    rots = roma.rotvec_to_rotmat(torch.randn(f, 24, 3) * 0.3)
    d6 = rots[..., :2, :].reshape(f, 24, 6)  # first two rows, as pytorch3d's matrix_to_rotation_6d
    root = torch.zeros(f, 1, 6)
    root[:, 0, :3] = torch.tensor([0.0, 0.9, 0.0])
    thetas = torch.cat([d6, root], 1).permute(1, 2, 0)[None]  # [1, 25, 6, F]
    torch.save(
        {"thetas": thetas, "meta": {"betas": torch.zeros(f, 10), "normalized_to_vertices": False}},
        tmp_path / "md_smpl_00001_.pt",
    )
    m = load_motion(tmp_path / "md_smpl_00001_.pt")
    p = m.persons[0]
    assert m.fps == 20.0
    torch.testing.assert_close(p.global_orient, rots[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(p.body_pose, rots[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(p.transl[0] + torch.tensor(PELVIS_REST["smpl"]), torch.tensor([0.0, 0.9, 0.0]))


# ---- bad input ------------------------------------------------------------------------------


def test_empty_and_truncated_files(tmp_path):
    (tmp_path / "e.npz").write_bytes(b"")
    with pytest.raises(MotionError, match="e.npz.*empty"):
        load_motion(tmp_path / "e.npz")
    path = save_motion(Motion([random_person()]), tmp_path / "m.npz")
    (tmp_path / "t.npz").write_bytes(path.read_bytes()[:100])
    with pytest.raises(MotionError, match="t.npz"):
        load_motion(tmp_path / "t.npz")
    torch.save({"poses": torch.zeros(2, 72)}, tmp_path / "p.pt")
    (tmp_path / "tp.pt").write_bytes((tmp_path / "p.pt").read_bytes()[:50])
    with pytest.raises(MotionError, match="tp.pt"):
        load_motion(tmp_path / "tp.pt")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(MotionError, match="b.json"):
        load_motion(tmp_path / "b.json")
    with pytest.raises(MotionError, match="missing.npz"):
        load_motion(tmp_path / "missing.npz")


def test_wrong_shapes_unknown_keys_nan(tmp_path):
    np.savez(tmp_path / "u.npz", foo=np.zeros(3), bar=np.ones(2))
    with pytest.raises(MotionError, match="u.npz.*no known motion layout"):
        load_motion(tmp_path / "u.npz")
    np.savez(tmp_path / "s.npz", global_orient=np.zeros((4, 3)), body_pose=np.zeros((4, 50)))
    with pytest.raises(MotionError, match="s.npz.*body_pose"):
        load_motion(tmp_path / "s.npz")
    np.savez(tmp_path / "f.npz", global_orient=np.zeros((4, 3)), body_pose=np.zeros((3, 69)))
    with pytest.raises(MotionError, match="f.npz.*frames"):
        load_motion(tmp_path / "f.npz")
    pose = np.zeros((4, 72))
    pose[2, 5] = np.nan
    np.savez(tmp_path / "n.npz", poses=pose)
    with pytest.raises(MotionError, match="n.npz.*NaN"):
        load_motion(tmp_path / "n.npz")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(MotionError, match="x.txt.*unsupported"):
        load_motion(tmp_path / "x.txt")


def test_change_body_type_keeps_pelvis(tmp_path):
    from amg_model.smpl.formats.convert import change_body_type

    p = random_person(3, "smpl")
    for target in ("mannequin", "smplx", "smplh"):
        q = change_body_type(p, target)
        assert q.body_type == target and q.body_pose.shape[1] == (23 if target == "mannequin" else 21)
        pelvis_p = p.transl + torch.tensor(PELVIS_REST["smpl"])
        torch.testing.assert_close(q.transl + torch.tensor(PELVIS_REST[target]), pelvis_p)
    back = change_body_type(change_body_type(p, "smplx"), "smpl")
    torch.testing.assert_close(back.body_pose[:, 21:], torch.eye(3).expand(3, 2, 3, 3))
    np.savez(tmp_path / "s.npz", poses=np.zeros((2, 72)), trans=np.zeros((2, 3)))
    m = load_motion(tmp_path / "s.npz", body_type="mannequin").persons[0]
    assert m.body_type == "mannequin"
    torch.testing.assert_close(
        m.transl[0] + torch.tensor(PELVIS_REST["mannequin"]), torch.tensor(PELVIS_REST["smpl"])
    )
