"""Camera presets against geometry."""

import math

import pytest
import torch

from amg_model.camera.presets import PRESET_NAMES, camera_preset, subject_center
from amg_model.errors import CameraError

TARGET = torch.tensor([0.2, 1.0, -0.3], dtype=torch.float64)


def preset(name, **kw):
    return camera_preset(name, frames=9, target=TARGET, **kw)


def project_target(cam):
    uv, _ = cam.project(TARGET.expand(cam.num_frames, 1, 3))
    return uv[:, 0]


def forward(cam):
    return cam.rotation_c2w()[:, :, 2]


def angle_deg(a, b):
    return torch.rad2deg(torch.acos((a * b).sum(-1).clamp(-1, 1)))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_is_valid_and_starts_at_the_same_framing(name):
    cam = preset(name)
    static = preset("static")
    assert cam.num_frames == 9
    assert torch.allclose(cam.w2c[0], static.w2c[0], atol=1e-9)
    assert torch.allclose(cam.positions()[0] - TARGET, static.positions()[0] - TARGET)
    assert math.isclose(float((static.positions()[0] - TARGET).norm()), 3.5, rel_tol=1e-9)


@pytest.mark.parametrize("direction, sign", [("right", 1.0), ("left", -1.0)])
def test_orbit_keeps_distance_and_spans_angle(direction, sign):
    cam = preset("orbit", amount=120.0, direction=direction, easing="ease_in_out")
    offset = cam.positions() - TARGET
    assert torch.allclose(offset.norm(dim=-1), torch.full((9,), 3.5, dtype=torch.float64))
    a0 = torch.atan2(offset[0, 0], offset[0, 2])
    a1 = torch.atan2(offset[-1, 0], offset[-1, 2])
    assert math.isclose(math.degrees(float(a1 - a0)), sign * 120.0, abs_tol=1e-6)
    assert torch.allclose(project_target(cam), torch.tensor([256.0, 256.0], dtype=torch.float64))


def test_orbit_right_moves_camera_to_its_right():
    cam = preset("orbit", amount=10.0)
    step = cam.positions()[1] - cam.positions()[0]
    assert float(step @ cam.rotation_c2w()[0, :, 0]) > 0


@pytest.mark.parametrize("direction, sign", [("in", -1.0), ("out", 1.0)])
def test_dolly_changes_distance_by_amount_and_keeps_orientation(direction, sign):
    cam = preset("dolly", amount=1.2, direction=direction)
    d = (cam.positions() - TARGET).norm(dim=-1)
    assert math.isclose(float(d[-1] - d[0]), sign * 1.2, abs_tol=1e-9)
    assert torch.allclose(cam.w2c[:, :3, :3], cam.w2c[:1, :3, :3].expand(9, 3, 3))
    assert torch.allclose(project_target(cam), torch.tensor([256.0, 256.0], dtype=torch.float64))


def test_dolly_into_subject_is_refused():
    with pytest.raises(CameraError, match="inside the subject"):
        preset("dolly", amount=3.4)


def test_truck_keeps_orientation_and_moves_perpendicular_to_view():
    cam = preset("truck", amount=0.8, direction="right")
    assert torch.allclose(cam.w2c[:, :3, :3], cam.w2c[:1, :3, :3].expand(9, 3, 3))
    move = cam.positions()[-1] - cam.positions()[0]
    assert math.isclose(float(move.norm()), 0.8, rel_tol=1e-9)
    assert abs(float(move @ forward(cam)[0])) < 1e-9
    assert float(move @ cam.rotation_c2w()[0, :, 0]) > 0
    assert project_target(cam)[-1, 0] < 256.0  # camera right: subject slides left


def test_pedestal_moves_vertically_with_fixed_orientation():
    cam = preset("pedestal", amount=0.4, direction="down")
    move = cam.positions()[-1] - cam.positions()[0]
    assert torch.allclose(move, torch.tensor([0.0, -0.4, 0.0], dtype=torch.float64))
    assert torch.allclose(cam.w2c[:, :3, :3], cam.w2c[:1, :3, :3].expand(9, 3, 3))


def test_pan_and_tilt_rotate_in_place():
    pan = preset("pan", amount=25.0, direction="right")
    tilt = preset("tilt", amount=15.0, direction="up")
    for cam in (pan, tilt):
        assert torch.allclose(cam.positions(), cam.positions()[:1].expand(9, 3))
    assert math.isclose(float(angle_deg(forward(tilt)[0], forward(tilt)[-1])), 15.0, abs_tol=1e-6)
    heading = torch.rad2deg(torch.atan2(forward(pan)[:, 0], -forward(pan)[:, 2]))
    assert math.isclose(float(heading[-1] - heading[0]), 25.0, abs_tol=1e-6)
    assert project_target(pan)[-1, 0] < 256.0  # turned right: subject to the left
    assert project_target(tilt)[-1, 1] > 256.0  # tilted up: subject lower in the image
    # Pan turns about the vertical: the horizon (camera x axis) stays level.
    assert torch.allclose(pan.rotation_c2w()[:, 1, 0], torch.zeros(9, dtype=torch.float64), atol=1e-12)


def test_zoom_changes_focal_only():
    cam = preset("zoom", amount=2.0, direction="in")
    static = preset("static")
    assert torch.allclose(cam.w2c, static.w2c)
    assert math.isclose(float(cam.fx[-1] / cam.fx[0]), 2.0, rel_tol=1e-9)
    assert torch.equal(cam.fx, cam.fy) and torch.equal(cam.cx, static.cx)
    out = preset("zoom", amount=2.0, direction="out")
    assert math.isclose(float(out.fx[-1] / out.fx[0]), 0.5, rel_tol=1e-9)


def test_crane_and_arc_keep_aim():
    crane = preset("crane", amount=1.0)
    arc = preset("arc", amount=90.0, rise=0.5)
    for cam in (crane, arc):
        assert torch.allclose(project_target(cam), torch.tensor([256.0, 256.0], dtype=torch.float64))
    assert math.isclose(float(crane.positions()[-1, 1] - crane.positions()[0, 1]), 1.0, abs_tol=1e-9)
    assert math.isclose(float(arc.positions()[-1, 1] - arc.positions()[0, 1]), 0.5, abs_tol=1e-9)


def test_dolly_zoom_keeps_target_size():
    cam = preset("dolly_zoom", amount=1.5)
    d = (cam.positions() - TARGET).norm(dim=-1)
    assert torch.allclose(cam.fx / d, (cam.fx / d)[:1].expand(9))


def test_preset_follows_a_moving_subject():
    points = torch.zeros(4, 2, 3)
    points[:, 1, 1] = 1.8
    points[:, :, 0] = torch.arange(4.0)[:, None]  # walks along +x
    centre = subject_center(points)
    assert torch.allclose(centre[:, 0], torch.arange(4.0))
    assert torch.allclose(centre[:, 1], torch.full((4,), 0.9))
    cam = camera_preset("static", frames=4, target=centre)
    assert torch.allclose(cam.positions()[:, 0], torch.arange(4.0), atol=1e-5)
    assert subject_center(points, follow=False)[:, 0].eq(1.5).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "spin"}, "unknown"),
        ({"name": "orbit", "direction": "up"}, "direction"),
        ({"name": "orbit", "amount": float("nan")}, "finite"),
        ({"name": "static", "distance": 0.1, "height": 1.0}, "distance"),
        ({"name": "static", "target": torch.tensor([0.0, float("nan"), 0.0])}, "NaN"),
        ({"name": "zoom", "amount": -1.0}, "positive"),
    ],
)
def test_preset_errors(kwargs, match):
    with pytest.raises(CameraError, match=match):
        camera_preset(**kwargs)
