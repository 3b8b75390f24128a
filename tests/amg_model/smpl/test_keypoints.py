"""POSE_KEYPOINT parsing and the COCO-18 correspondence with SMPL joints."""

import pytest
import torch

from amg_model.errors import MotionError
from amg_model.smpl.keypoints import parse_pose_keypoints, smpl_to_coco18
from amg_model.smpl.kinematics import SMPL_JOINT_NAMES

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


def _person(x0: float, y0: float, conf: float = 0.9) -> dict:
    flat = []
    for j in range(18):
        flat += [x0 + j, y0 + 2 * j, conf]
    return {"pose_keypoints_2d": flat}


def test_pixel_frames_with_a_varying_number_of_people():
    frames = [
        {"people": [_person(10, 20)], "canvas_width": 640, "canvas_height": 480},
        {"people": [_person(10, 20), _person(300, 40)], "canvas_width": 640, "canvas_height": 480},
        {"people": [], "canvas_width": 640, "canvas_height": 480},
    ]
    kp, size = parse_pose_keypoints(frames)
    assert size == (640, 480) and kp.shape == (3, 2, 18, 3)
    torch.testing.assert_close(kp[1, 1, 5], torch.tensor([305.0, 50.0, 0.9]))
    assert (kp[0, 1, :, 2] == 0).all() and (kp[2, :, :, 2] == 0).all()  # empty slots, empty frame


def test_normalised_coordinates_are_scaled_to_the_canvas():
    person = {"pose_keypoints_2d": [0.5, 0.25, 1.0] * 18}
    kp, size = parse_pose_keypoints([{"people": [person], "canvas_width": 200, "canvas_height": 100}])
    assert size == (200, 100)
    torch.testing.assert_close(kp[0, 0, 0], torch.tensor([100.0, 25.0, 1.0]))
    # forcing pixels keeps the values
    kp_px, _ = parse_pose_keypoints([{"people": [person], "canvas_width": 200, "canvas_height": 100}],
                                    normalized=False)  # fmt: skip
    torch.testing.assert_close(kp_px[0, 0, 0], torch.tensor([0.5, 0.25, 1.0]))


def test_undetected_joints_are_zeroed_and_tensor_input_accepted():
    kp = torch.rand(2, 1, 18, 3) * 100
    kp[..., 2] = 1.0
    kp[0, 0, 3] = torch.tensor([55.0, 66.0, 0.0])  # undetected joint with junk coordinates
    out, size = parse_pose_keypoints(kp, image_size=(128, 128))
    assert size == (128, 128) and out[0, 0, 3].abs().sum() == 0


@pytest.mark.parametrize(
    "frames, match",
    [
        ([], "no frames"),
        ([{"people": [{"pose_keypoints_2d": [0.0, 0.0, 0.0] * 18}]}], "no detected joint"),
        ([{"people": [{"pose_keypoints_2d": [float("nan"), 1.0, 1.0] * 18}]}], "NaN"),
        (["not a frame"], "not a POSE_KEYPOINT dict"),
        (torch.zeros(2, 1, 17, 3), "expected \\[frames, people, 18, 3\\]"),
    ],
)
def test_bad_keypoints_are_clear_errors(frames, match):
    with pytest.raises(MotionError, match=match):
        parse_pose_keypoints(frames)


def test_normalised_without_canvas_asks_for_the_size():
    with pytest.raises(MotionError, match="pass image_size"):
        parse_pose_keypoints(torch.full((1, 1, 18, 3), 0.5))


def test_smpl_to_coco18_correspondence():
    joints = torch.randn(3, 24, 3)
    face = torch.randn(3, 5, 3)  # nose, right_eye, left_eye, right_ear, left_ear
    coco = smpl_to_coco18(joints, face)
    assert coco.shape == (3, 18, 3)
    torch.testing.assert_close(coco[:, 0], face[:, 0])  # nose
    neck = (joints[:, J["left_shoulder"]] + joints[:, J["right_shoulder"]]) / 2
    torch.testing.assert_close(coco[:, 1], neck)
    torch.testing.assert_close(coco[:, 2], joints[:, J["right_shoulder"]])
    torch.testing.assert_close(coco[:, 7], joints[:, J["left_wrist"]])
    torch.testing.assert_close(coco[:, 10], joints[:, J["right_ankle"]])
    torch.testing.assert_close(coco[:, 14], face[:, 1])  # right eye
    torch.testing.assert_close(coco[:, 17], face[:, 4])  # left ear
