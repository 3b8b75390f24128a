"""Motion editing: exact properties of trim, resample, loop, rotate, mirror, combine, select."""

import pytest
import roma
import torch

from amg_model.errors import MotionError
from amg_model.smpl import edit
from amg_model.smpl.formats.convert import PELVIS_REST
from amg_model.smpl.kinematics import SMPL_MIRROR, forward_kinematics
from amg_model.smpl.motion import Motion, Person


def person(frames=8, body_type="smpl", seed=0, hands=False, name="p") -> Person:
    g = torch.Generator().manual_seed(seed)
    joints = 23 if body_type in ("smpl", "mannequin") else 21

    def rot(*shape):
        return roma.rotvec_to_rotmat(torch.randn(*shape, 3, generator=g) * 0.4)

    return Person(
        body_type=body_type,
        gender="neutral",
        betas=torch.zeros(10),
        global_orient=rot(frames),
        body_pose=rot(frames, joints),
        transl=torch.randn(frames, 3, generator=g),
        left_hand_pose=rot(frames, 15) if hands else None,
        right_hand_pose=rot(frames, 15) if hands else None,
        jaw_pose=rot(frames) if hands else None,
        name=name,
    )


def rest_skeleton(symmetric: bool = False) -> torch.Tensor:
    """A random rest skeleton whose pelvis is the default J0 (what edit assumes).

    ``symmetric``: mirror-symmetric about the plane x = J0.x (a body that mirroring maps onto
    itself).
    """
    rest = torch.randn(24, 3, generator=torch.Generator().manual_seed(5)) * 0.3
    j0 = torch.tensor(PELVIS_REST["smpl"])
    if symmetric:
        for j, m in enumerate(SMPL_MIRROR):
            if m == j:
                rest[j, 0] = 0.0
            elif m > j:
                rest[m] = rest[j] * torch.tensor([-1.0, 1.0, 1.0])
        rest[:, 0] += j0[0]
    rest[0] = j0
    return rest


def posed_joints(p: Person, symmetric: bool = False) -> torch.Tensor:
    """[F, 24, 3] world joints as smplx poses them: FK about the rest pelvis, plus transl."""
    rot = torch.cat([p.global_orient[:, None], p.body_pose], dim=1)
    joints, _ = forward_kinematics(rot, rest_skeleton(symmetric))
    return joints + p.transl[:, None]


def test_trim():
    m = Motion([person(10), person(10, seed=1)], fps=30)
    t = edit.trim(m, 2, 7)
    assert t.num_frames == 5 and len(t.persons) == 2
    torch.testing.assert_close(t.persons[0].transl, m.persons[0].transl[2:7])
    assert edit.trim(m, -3).num_frames == 3
    with pytest.raises(MotionError, match="empty"):
        edit.trim(m, 5, 5)


def test_resample_count_and_endpoints():
    m = Motion([person(31)], fps=30.0)
    r = edit.resample(m, 15.0)
    assert r.fps == 15.0 and r.num_frames == 16
    p, q = m.persons[0], r.persons[0]
    for name in ("global_orient", "body_pose", "transl"):
        torch.testing.assert_close(getattr(q, name)[0], getattr(p, name)[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(getattr(q, name)[-1], getattr(p, name)[-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(q.transl[1], p.transl[2], atol=1e-5, rtol=0)  # frame 1 at 15 fps = frame 2
    up = edit.resample(Motion([person(3)], fps=10.0), 20.0)
    assert up.num_frames == 5
    # the in-between frame is the geodesic midpoint: equal angles to both neighbours
    a, mid, b = person(3).global_orient[0], up.persons[0].global_orient[1], person(3).global_orient[1]
    da = roma.rotmat_geodesic_distance(a, mid)
    db = roma.rotmat_geodesic_distance(mid, b)
    torch.testing.assert_close(da, db, atol=1e-4, rtol=0)
    torch.testing.assert_close(da + db, roma.rotmat_geodesic_distance(a, b), atol=1e-4, rtol=0)


def test_loop_continues_translation():
    frames = 10
    walk = person(frames)
    walk.transl = torch.stack([torch.zeros(frames), torch.zeros(frames), torch.arange(frames) * 0.1], -1)
    looped = edit.loop(Motion([walk], fps=10), times=3)
    z = looped.persons[0].transl[:, 2]
    assert looped.num_frames == 30
    torch.testing.assert_close(z, torch.arange(30) * 0.1, atol=1e-5, rtol=0)  # keeps walking evenly
    still = edit.loop(Motion([walk]), num_frames=25, continue_translation=False)
    assert still.num_frames == 25 and still.persons[0].transl[:, 2].max() <= 0.9 + 1e-6
    with pytest.raises(MotionError, match="exactly one"):
        edit.loop(Motion([walk]))


@pytest.mark.parametrize("about", ["start", "origin"])
def test_rotate_keeps_distances_and_turns(about):
    p = person(6)
    m = Motion([p])
    r = edit.rotate_motion(m, 90.0, about=about)
    a, b = posed_joints(p).reshape(-1, 3), posed_joints(r.persons[0]).reshape(-1, 3)
    da = torch.cdist(a.double(), a.double(), compute_mode="donot_use_mm_for_euclid_dist")
    db = torch.cdist(b.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist")
    torch.testing.assert_close(da, db, atol=1e-4, rtol=0)
    # the whole posed body turned rigidly: b = R a + c
    rot = edit.yaw_matrix(90.0)
    offset = b - a @ rot.T
    torch.testing.assert_close(offset, offset[:1].expand_as(offset), atol=1e-4, rtol=0)
    if about == "origin":
        torch.testing.assert_close(offset[0], torch.zeros(3), atol=1e-4, rtol=0)
    else:  # the start pelvis stays put (horizontally)
        torch.testing.assert_close(b[0, [0, 2]], a[0, [0, 2]], atol=1e-4, rtol=0)


def test_translate_and_person_selection():
    m = Motion([person(4), person(4, seed=1)])
    t = edit.translate_motion(m, [1.0, 0.0, 0.0], persons=[1])
    torch.testing.assert_close(t.persons[0].transl, m.persons[0].transl)
    torch.testing.assert_close(t.persons[1].transl, m.persons[1].transl + torch.tensor([1.0, 0.0, 0.0]))


@pytest.mark.parametrize("body_type", ["smpl", "smplx"])
def test_mirror_is_an_involution_and_reflects(body_type):
    p = person(5, body_type, hands=body_type == "smplx")
    m = Motion([p])
    twice = edit.mirror_motion(edit.mirror_motion(m)).persons[0]
    for name, t in p.frame_tensors().items():
        torch.testing.assert_close(getattr(twice, name), t, atol=1e-5, rtol=0)
    once = edit.mirror_motion(m).persons[0]
    if body_type == "smpl":  # posed joints reflect across x = 0, left and right swapped
        a, b = posed_joints(p, symmetric=True), posed_joints(once, symmetric=True)
        reflected = a[:, list(SMPL_MIRROR)] * torch.tensor([-1.0, 1.0, 1.0])
        torch.testing.assert_close(b, reflected, atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(once.left_hand_pose[0, 0], edit._mirror_rot(p.right_hand_pose[0, 0]))


def test_combine_resamples_and_pads():
    a = Motion([person(10, name="a")], fps=10.0)
    b = Motion([person(31, name="b"), person(31, seed=2, name="c")], fps=30.0)
    c = edit.combine([a, b])
    assert c.fps == 30.0 and len(c.persons) == 3 and c.num_frames == 31
    c.validate("combined")
    held = c.persons[0]  # 10 frames at 10 fps -> 28 at 30 fps, then held
    torch.testing.assert_close(held.transl[-1], held.transl[27])
    looped = edit.combine([a, b], pad="loop")
    assert looped.num_frames == 31
    with pytest.raises(MotionError, match="pad"):
        edit.combine([a, b], pad="bounce")


def test_select_persons():
    m = Motion([person(3, name="x"), person(3, name="y"), person(3, name="z")])
    s = edit.select_persons(m, ["z", 0])
    assert [p.name for p in s.persons] == ["z", "x"]
    with pytest.raises(MotionError, match="no person named"):
        edit.select_persons(m, ["w"])
    with pytest.raises(MotionError, match="out of range"):
        edit.select_persons(m, [5])
