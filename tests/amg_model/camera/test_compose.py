"""Trajectory composition: retime, reverse, anchor, concatenate."""

import pytest
import torch

from amg_model.camera.compose import (
    anchor_camera,
    concat_cameras,
    retime_camera,
    reverse_camera,
    sample_camera,
)
from amg_model.camera.presets import camera_preset
from amg_model.errors import CameraError

TARGET = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)


def orbit(frames=9, **kw):
    return camera_preset("orbit", frames=frames, amount=80.0, target=TARGET, **kw)


def test_retime_keeps_endpoints_and_stays_on_the_orbit():
    cam = orbit()
    for frames in (4, 9, 33):
        out = retime_camera(cam, frames)
        assert out.num_frames == frames
        assert torch.equal(out.w2c[0], cam.w2c[0]) and torch.equal(out.w2c[-1], cam.w2c[-1])
        d = (out.positions() - torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)).norm(dim=-1)
        # Linear interpolation of centres cuts the chord slightly inside the circle.
        assert (d <= 3.5 + 1e-12).all() and (d > 3.48).all()
    same = retime_camera(cam, 9)
    assert torch.allclose(same.w2c, cam.w2c, atol=1e-12)


def test_sample_camera_halfway_slerps():
    cam = camera_preset("pan", frames=2, amount=40.0, target=TARGET)
    mid = sample_camera(cam, torch.tensor([0.5], dtype=torch.float64))
    ref = camera_preset("pan", frames=3, amount=40.0, target=TARGET)
    assert torch.allclose(mid.w2c[0], ref.w2c[1], atol=1e-12)


def test_reverse():
    cam = orbit()
    rev = reverse_camera(cam)
    assert torch.equal(rev.w2c[0], cam.w2c[-1]) and torch.equal(reverse_camera(rev).w2c, cam.w2c)


def test_anchor_keeps_relative_motion():
    cam = orbit()
    anchor = camera_preset("static", frames=1, angle_deg=45.0, distance=2.0, target=TARGET)
    moved = anchor_camera(cam, anchor)
    assert torch.allclose(moved.w2c[0], anchor.w2c[0])
    rel = cam.w2c[3] @ torch.linalg.inv(cam.w2c[0])
    rel_moved = moved.w2c[3] @ torch.linalg.inv(moved.w2c[0])
    assert torch.allclose(rel, rel_moved, atol=1e-12)


def test_concat_plain_blend_and_continuous():
    a = orbit(frames=6)
    b = camera_preset("dolly", frames=5, target=TARGET)
    plain = concat_cameras([a, b])
    assert plain.num_frames == 11 and torch.equal(plain.w2c[6], b.w2c[0])
    blended = concat_cameras([a, b], blend_frames=3)
    assert blended.num_frames == 8
    assert torch.equal(blended.w2c[:3], a.w2c[:3]) and torch.equal(blended.w2c[-2:], b.w2c[-2:])
    steps = (blended.positions()[1:] - blended.positions()[:-1]).norm(dim=-1)
    jump = (b.positions()[0] - a.positions()[-1]).norm()
    assert steps.max() < jump  # the seam is spread over the blend
    chained = concat_cameras([a, b], continuous=True)
    assert chained.num_frames == 10
    step = (chained.positions()[6] - chained.positions()[5]).norm()
    assert torch.isclose(step, (b.positions()[1] - b.positions()[0]).norm())


def test_concat_errors():
    a = orbit(frames=4)
    with pytest.raises(CameraError, match="image sizes"):
        concat_cameras([a, a.resized(256, 256)])
    with pytest.raises(CameraError, match="longer"):
        concat_cameras([a, a], blend_frames=5)
    with pytest.raises(CameraError, match="at least one"):
        concat_cameras([])
