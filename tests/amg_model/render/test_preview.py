"""Scene preview tests: size, drawn content, errors."""

import pytest
import torch

from amg_model.camera.camera import Camera
from amg_model.errors import RenderError
from amg_model.render.preview import render_scene_preview


def orbit_camera(frames: int = 8) -> Camera:
    angle = torch.linspace(0, 1.5, frames)
    eye = torch.stack([3 * torch.sin(angle), torch.full_like(angle, 1.2), 3 * torch.cos(angle)], -1)
    return Camera.from_look_at(eye, torch.tensor([0.0, 1.0, 0.0]).expand(frames, 3), width=64, height=64)


def test_preview_draws_cameras_and_points():
    points = torch.zeros(8, 24, 3)
    points[..., 1] = torch.linspace(0, 1.7, 24)
    img = render_scene_preview(points, orbit_camera(), size=256)
    assert img.shape == (128, 256, 3)
    assert 0 <= img.min() and img.max() <= 1
    # Both panels have content beyond the grid: coloured (non-grey) pixels.
    colourful = (img.amax(-1) - img.amin(-1)) > 0.2
    assert colourful[:, :128].sum() > 50 and colourful[:, 128:].sum() > 50


def test_preview_of_a_motion_with_the_mannequin():
    body = pytest.importorskip("amg_model.smpl.body")
    procedural = pytest.importorskip("amg_model.smpl.procedural")
    motion = procedural.procedural_motion("walk", 8, 24.0)
    model = body.load_body_model("mannequin")
    with_skeleton = render_scene_preview(motion, orbit_camera(), model, size=128)
    trail_only = render_scene_preview(motion, orbit_camera(), None, size=128)
    assert with_skeleton.shape == trail_only.shape == (64, 128, 3)
    assert not torch.equal(with_skeleton, trail_only)


def test_preview_errors():
    with pytest.raises(RenderError, match="size"):
        render_scene_preview(torch.zeros(4, 3), orbit_camera(), size=10)
    with pytest.raises(RenderError, match="NaN"):
        render_scene_preview(torch.full((4, 3), float("nan")), orbit_camera())
    with pytest.raises(RenderError, match="points"):
        render_scene_preview(torch.zeros(4, 2), orbit_camera())
