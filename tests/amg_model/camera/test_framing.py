"""Aim points from a motion."""

import pytest
import torch

from amg_model.camera.framing import motion_target
from amg_model.camera.presets import camera_preset
from amg_model.errors import CameraError
from amg_model.smpl.body import load_body_model
from amg_model.smpl.edit import translate_motion
from amg_model.smpl.motion import Motion
from amg_model.smpl.procedural import procedural_motion


@pytest.fixture(scope="module")
def body():
    return load_body_model("mannequin")


def test_fixed_target_centres_the_walker_and_projects_to_the_image_centre(body):
    motion = procedural_motion("walk", frames=12, fps=8.0)
    target = motion_target(motion, body)
    assert target.shape == (12, 3) and torch.equal(target[0], target[-1])
    joints = body.pose_person(motion.persons[0]).joints
    assert joints[..., 2].min() <= target[0, 2] <= joints[..., 2].max()  # along the walk
    assert 0.6 < float(target[0, 1]) < 1.3  # between the feet on y = 0 and the head
    cam = camera_preset("static", frames=12, target=target[0])
    uv, _ = cam.project(target[:1].expand(12, 1, 3))
    torch.testing.assert_close(uv[:, 0], torch.tensor([[cam.width / 2, cam.height / 2]]).expand(12, 2))


def test_follow_target_moves_with_the_people(body):
    motion = procedural_motion("walk", frames=12, fps=8.0)
    moved = translate_motion(motion, [2.0, 0.0, 0.0])
    a, b = motion_target(motion, body, follow=True), motion_target(moved, body, follow=True)
    torch.testing.assert_close(b - a, torch.tensor([2.0, 0.0, 0.0]).expand(12, 3), atol=1e-5, rtol=0)
    assert a[-1, 2] > a[0, 2] + 0.5  # the walker advances, and so does the aim


def test_no_persons_is_a_clear_error():
    with pytest.raises(CameraError, match="no persons"):
        motion_target(Motion(persons=[], fps=8.0))
