"""Keyframed cameras: exact keyframes, smooth interpolation, schema errors."""

import json
import math

import pytest
import torch

from amg_model.camera.keyframes import camera_from_keyframes, rotation_from_yaw_pitch_roll
from amg_model.errors import CameraError

DESC = {
    "width": 320,
    "height": 240,
    "keyframes": [
        {"frame": 0, "position": [0, 1.2, 3.5], "look_at": [0, 1, 0], "fov_deg": 50},
        {"frame": 6, "position": [3.5, 1.5, 0], "look_at": [0, 1, 0], "easing": "ease_in_out"},
        {"frame": 10, "position": [0, 2.0, -3], "rotation_deg": [180, -20, 10], "fov_deg": 30},
    ],
}


def test_keyframes_are_reached_exactly():
    cam = camera_from_keyframes(json.dumps(DESC), frames=14)
    assert cam.num_frames == 14 and (cam.width, cam.height) == (320, 240)
    pos = cam.positions()
    for key in DESC["keyframes"]:
        assert torch.allclose(
            pos[key["frame"]], torch.tensor(key["position"], dtype=torch.float32), atol=1e-5
        )
    uv, _ = cam.project(torch.tensor([0.0, 1.0, 0.0]).expand(14, 1, 3))
    assert torch.allclose(uv[[0, 6], 0], torch.tensor([160.0, 120.0]).expand(2, 2), atol=1e-3)
    fov = cam.fov_deg()
    assert math.isclose(float(fov[0]), 50.0, abs_tol=1e-4) and math.isclose(float(fov[6]), 50.0, abs_tol=1e-4)
    assert math.isclose(float(fov[10]), 30.0, abs_tol=1e-4) and math.isclose(
        float(fov[8]), 40.0, abs_tol=1e-3
    )
    # Held after the last keyframe.
    assert torch.allclose(cam.w2c[13], cam.w2c[10])
    ref = rotation_from_yaw_pitch_roll(180, -20, 10).to(torch.float32)
    assert torch.allclose(cam.rotation_c2w()[10], ref, atol=1e-6)


def test_interpolation_is_smooth_and_rigid():
    cam = camera_from_keyframes(DESC, frames=11)
    rot = cam.rotation_c2w().double()
    eye = torch.eye(3, dtype=torch.float64).expand(11, 3, 3)
    assert torch.allclose(rot.transpose(1, 2) @ rot, eye, atol=1e-5)
    steps = (cam.positions()[1:] - cam.positions()[:-1]).norm(dim=-1)
    assert steps.max() < 2.0  # no jumps (the eased 4-frame segment peaks near 1.9 m)


def test_two_keyframes_linear_is_a_straight_line():
    desc = {"keyframes": [{"frame": 0, "position": [0, 1, 3], "rotation_deg": [0, 0, 0]},
                          {"frame": 4, "position": [2, 1, 3], "rotation_deg": [30, 0, 0]}]}  # fmt: skip
    cam = camera_from_keyframes(desc)
    assert cam.num_frames == 5
    assert torch.allclose(cam.positions()[:, 0], torch.linspace(0, 2, 5), atol=1e-5)
    heading = torch.rad2deg(torch.atan2(-cam.rotation_c2w()[:, 0, 2], -cam.rotation_c2w()[:, 2, 2]))
    assert torch.allclose(heading, torch.linspace(0, 30, 5), atol=1e-3)  # positive yaw turns left (-x)


def test_yaw_zero_looks_at_subject_from_front():
    r = rotation_from_yaw_pitch_roll(0, 0, 0)
    assert torch.allclose(r[:, 2], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    up = rotation_from_yaw_pitch_roll(0, 30, 0)[:, 2]
    assert up[1] > 0


def test_look_at_interpolation_keeps_aim():
    desc = {"rotation_interpolation": "look_at",
            "keyframes": [{"frame": 0, "position": [0, 1, 3], "look_at": [0, 1, 0]},
                          {"frame": 8, "position": [3, 1, 0], "look_at": [0, 1, 0]}]}  # fmt: skip
    cam = camera_from_keyframes(desc)
    uv, _ = cam.project(torch.tensor([0.0, 1.0, 0.0]).expand(9, 1, 3))
    assert torch.allclose(uv[:, 0], torch.tensor([256.0, 256.0]).expand(9, 2), atol=1e-3)


def kf(*frames):
    return [{"frame": f, "position": [0, 1, 3], "look_at": [0, 1, 0]} for f in frames]


@pytest.mark.parametrize(
    "desc, match",
    [
        ("{not json", "not valid JSON"),
        ({"keyframes": []}, "non-empty"),
        ({"keyframes": kf(0, 4, 4)}, "repeats frame 4"),
        ({"keyframes": kf(0, 5, 2)}, "comes before frame 5"),
        ({"keyframes": [{"frame": 0, "look_at": [0, 1, 0]}]}, "lacks 'position'"),
        ({"keyframes": [{"frame": 0, "position": [0, 1, 3]}]}, "exactly one"),
        ({"keyframes": [{"frame": 0, "position": [0, float("nan"), 3], "look_at": [0, 1, 0]}]}, "finite"),
        ({"keyframes": [{"frame": 0, "position": [0, 1], "look_at": [0, 1, 0]}]}, "3 numbers"),
        ({"keyframes": [{"frame": 0, "position": [0, 1, 0], "look_at": [0, 1, 0]}]}, "coincides"),
        ({"keyframes": [{"frame": 0, "position": [0, 1, 3], "lookat": [0, 1, 0]}]}, "unknown keys"),
        ({"keyframes": kf(0, 3), "frames": 2}, "beyond"),
        ({"keyframes": kf(0, 3), "easing": "bouncy"}, "easing"),
        ({"keyframes": [{"frame": -1, "position": [0, 1, 3], "look_at": [0, 1, 0]}]}, "integer >= 0"),
    ],
)
def test_errors(desc, match):
    with pytest.raises(CameraError, match=match):
        camera_from_keyframes(desc)


def test_nan_in_json_text_is_refused():
    text = '{"keyframes": [{"frame": 0, "position": [0, NaN, 3], "look_at": [0, 1, 0]}]}'
    with pytest.raises(CameraError, match="finite"):
        camera_from_keyframes(text)


def test_module_docstring_example_parses():
    import re

    from amg_model.camera import keyframes

    block = keyframes.__doc__.split("Schema (a dict, or the same as a JSON string)::")[1].split(
        "Keyframe keys:"
    )[0]
    text = re.sub(r"\s{2,}(optional:[^\n]*|or \"[^\n]*)", "", block)
    cam = camera_from_keyframes(text)
    assert cam.num_frames == 48 and math.isclose(float(cam.fov_deg()[47]), 35.0, abs_tol=1e-4)
