"""Camera helpers: look-at geometry, field of view, resizing, slicing."""

import math

import pytest
import torch

from amg_model.camera.camera import Camera, focal_from_fov, fov_from_focal, look_at
from amg_model.errors import CameraError


def test_look_at_projects_target_to_centre_and_keeps_up_up():
    eye = torch.tensor([[0.5, 1.6, 3.0], [-2.0, 0.4, -1.0]], dtype=torch.float64)
    target = torch.tensor([0.1, 1.0, -0.2], dtype=torch.float64)
    cam = Camera.from_look_at(eye, target, fov_deg=50.0, width=640, height=480)
    uv, depth = cam.project(target.expand(2, 1, 3))
    assert torch.allclose(uv[:, 0], torch.tensor([[320.0, 240.0]], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(depth[:, 0], (eye - target).norm(dim=-1))
    # A point above the target appears higher in the image (smaller v).
    uv_up, _ = cam.project((target + torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64)).expand(2, 1, 3))
    assert (uv_up[:, 0, 1] < 240.0).all()
    assert torch.allclose(cam.positions(), eye, atol=1e-12)


def test_look_at_from_front_maps_world_x_to_image_right():
    w2c = look_at([0.0, 1.0, 4.0], [0.0, 1.0, 0.0])
    assert torch.allclose(w2c[0, :3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-6)


def test_look_at_rejects_degenerate():
    with pytest.raises(CameraError):
        look_at([0.0, 3.0, 0.0], [0.0, 0.0, 0.0])
    with pytest.raises(CameraError):
        look_at([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])


def test_focal_fov_round_trip():
    f = focal_from_fov(60.0, 512)
    assert math.isclose(f, 256 / math.tan(math.radians(30)))
    assert math.isclose(fov_from_focal(f, 512), 60.0)
    cam = Camera.static(fov_deg=40.0, width=768, height=512, frames=3)
    assert torch.allclose(cam.fov_deg(), torch.full((3,), 40.0), atol=1e-4)
    assert cam.fov_deg("horizontal")[0] > 40.0


def test_resized_scale_and_crop():
    cam = Camera.static(width=512, height=512, frames=2)
    s = cam.resized(256, 128, fit="scale")
    assert (s.fx == cam.fx / 2).all() and (s.fy == cam.fy / 4).all() and (s.cy == 64).all()
    c = cam.resized(1024, 576, fit="crop")
    assert torch.allclose(c.fx, cam.fx * 2) and torch.allclose(c.fy, cam.fy * 2)
    assert (c.cx == 512).all() and (c.cy == 288).all()
    with pytest.raises(CameraError):
        cam.resized(0, 10)


def test_slice_and_to():
    cam = Camera.static(frames=5)
    part = cam.slice([0, 4])
    assert part.num_frames == 2 and torch.equal(part.w2c[1], cam.w2c[4])
    assert cam.slice(slice(1, 3)).num_frames == 2
    assert cam.to(dtype=torch.float64).w2c.dtype == torch.float64
    with pytest.raises(CameraError):
        cam.slice([7])


def test_from_look_at_frame_counts():
    eye = torch.tensor([[0.0, 1.0, 3.0], [0.5, 1.0, 3.0]])
    assert Camera.from_look_at(eye, [0.0, 1.0, 0.0]).num_frames == 2
    assert Camera.from_look_at([0.0, 1.0, 3.0], [0.0, 1.0, 0.0], frames=4).num_frames == 4
    with pytest.raises(CameraError, match="same number of frames"):
        Camera.from_look_at(eye, torch.zeros(3, 3))


def test_validate_rejects_non_rigid_extrinsics():
    cam = Camera.static(frames=2)
    cam.w2c[1, :3, :3] *= 2.0
    with pytest.raises(CameraError, match="not a rigid transform"):
        cam.validate()
    mirrored = Camera.static(frames=1)
    mirrored.w2c[0, 0, :3] *= -1.0
    with pytest.raises(CameraError, match="not a rigid transform"):
        mirrored.validate()
