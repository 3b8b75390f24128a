"""Avatar rendering tests with the built-in mannequin (tiny images, few frames)."""

import threading
from contextlib import contextmanager

import pytest
import torch

from amg_model.camera.camera import Camera
from amg_model.errors import RenderError
from amg_model.render import raster
from amg_model.render.appearance import Appearance, appearance_preset, region_colors, vertex_colors
from amg_model.render.avatars import render_avatars
from amg_model.smpl.motion import Motion

body = pytest.importorskip("amg_model.smpl.body")
procedural = pytest.importorskip("amg_model.smpl.procedural")


@pytest.fixture(scope="module")
def mannequin():
    return body.load_body_model("mannequin")


def two_walkers(frames: int = 2) -> Motion:
    a = procedural.procedural_motion("walk", frames, 24.0).persons[0]
    b = procedural.procedural_motion("idle", frames, 24.0).persons[0]
    b.transl = b.transl + torch.tensor([0.9, 0.0, -0.5])
    return Motion([a, b], 24.0)


def front_camera(frames: int, size: int = 64) -> Camera:
    return Camera.static(
        eye=(0.45, 1.0, 4.0), target=(0.45, 0.9, 0.0), width=size, height=size, frames=frames
    )


def test_joints_project_onto_the_rendered_body(mannequin):
    motion = two_walkers(2)
    cam = front_camera(2)
    out = render_avatars(mannequin, motion, cam, supersample=1)
    for p, person in enumerate(motion.persons):
        joints = mannequin.pose_person(person).joints  # [F, 24, 3]
        uv, _ = cam.project(joints.float())
        x, y = uv[..., 0].long().clamp(0, 63), uv[..., 1].long().clamp(0, 63)
        # Torso joints (pelvis, spine, neck, head) are inside the body; hands and feet can sit on
        # the silhouette, so test the central chain in this person's own (visible) mask.
        central = [0, 3, 6, 9, 12, 15]
        for f in range(2):
            hits = out.mask[f, y[f, central], x[f, central]]
            assert (hits > 0).all(), f"person {p} frame {f}: joints off the body"
    assert out.person_masks.shape == (2, 2, 64, 64)
    assert out.person_masks[:, 0].sum() > 50 and out.person_masks[:, 1].sum() > 50
    # Pure black background, colours in range.
    assert out.image[out.mask == 0].abs().max() == 0
    assert out.image.min() >= 0 and out.image.max() <= 1


def test_size_override_and_appearances(mannequin):
    motion = two_walkers(1)
    look = Appearance(top=(1.0, 0.0, 0.0), variation=0.0)
    out = render_avatars(mannequin, motion, front_camera(1), appearance=[look, "sport"], size=(48, 32))
    assert out.image.shape == (1, 32, 48, 3)
    # Person 0 wears a pure red top: its torso pixels are red-dominated after lighting.
    torso = out.image[0][out.person_masks[0, 0] == 1]
    assert (torso[:, 0] > torso[:, 1] + 0.2).sum() > 10


def test_presets_differ_between_persons_and_map_regions():
    a, b = appearance_preset("casual", 0), appearance_preset("casual", 1)
    assert (a.top, a.bottom, a.skin) != (b.top, b.bottom, b.skin)
    r1, r2 = appearance_preset("random", 0, seed=3), appearance_preset("random", 0, seed=3)
    assert r1 == r2
    look = Appearance(sleeves="long", legs="shorts")
    table = region_colors(look)
    assert table[4].tolist() == pytest.approx(list(look.top))  # forearms wear the top
    assert table[8].tolist() == pytest.approx(list(look.skin))  # shins show skin
    regions = torch.arange(10)
    flat = vertex_colors(Appearance(variation=0.0), regions, torch.zeros(10, 3))
    assert torch.allclose(flat, region_colors(Appearance()))
    varied = vertex_colors(Appearance(variation=0.2), torch.full((50,), 2), torch.rand(50, 3))
    assert varied.std(0).max() > 0.005


def test_errors(mannequin):
    motion = two_walkers(2)
    with pytest.raises(RenderError, match="2 frames but the camera has 3"):
        render_avatars(mannequin, motion, front_camera(3))
    with pytest.raises(RenderError, match="no persons"):
        render_avatars(mannequin, Motion([], 24.0), front_camera(2))
    with pytest.raises(RenderError, match="out of range"):
        render_avatars(mannequin, motion, front_camera(2), size=(5000, 64))
    with pytest.raises(RenderError, match="preset"):
        render_avatars(mannequin, motion, front_camera(2), appearance="gala")
    bad = two_walkers(2)
    bad.persons[0].body_pose[0, 3, 0, 0] = float("nan")
    with pytest.raises(RenderError, match="NaN"):
        render_avatars(mannequin, bad, front_camera(2))


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_two_worker_threads_match_one(mannequin, monkeypatch):
    motion, cam = two_walkers(4), front_camera(4)
    threads_used = set()
    render_chunk = raster._render_chunk

    def recording(*args, **kwargs):
        threads_used.add(threading.current_thread().name)
        return render_chunk(*args, **kwargs)

    monkeypatch.setattr(raster, "_render_chunk", recording)
    with torch_threads(1):
        one = render_avatars(mannequin, motion, cam, supersample=2, chunk_frames=1)
    assert len(threads_used) == 1
    threads_used.clear()
    calls = []
    with torch_threads(2):
        two = render_avatars(
            mannequin, motion, cam, supersample=2, chunk_frames=1,
            progress=lambda done, total: calls.append((done, total)),
        )  # fmt: skip
        assert torch.get_num_threads() == 2  # the caller's setting is kept
    assert len(threads_used) == 2
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert one.mask.sum() > 100
    for name in ("image", "person_masks", "mask", "depth", "normals"):
        assert torch.equal(getattr(one, name), getattr(two, name)), name


def test_worker_errors_reach_the_caller(mannequin, monkeypatch):
    render_chunk = raster._render_chunk

    def failing(verts, *args, **kwargs):
        frames = next(a for a in args if isinstance(a, slice))
        if frames.start == 2:
            raise RenderError(f"frame {frames.start} cannot be drawn")
        return render_chunk(verts, *args, **kwargs)

    monkeypatch.setattr(raster, "_render_chunk", failing)
    with torch_threads(2):
        with pytest.raises(RenderError, match="frame 2 cannot be drawn"):
            render_avatars(mannequin, two_walkers(4), front_camera(4), chunk_frames=1)
        assert torch.get_num_threads() == 2

        def interrupt(done, total):
            raise KeyboardInterrupt("stopped by the user")

        with pytest.raises(KeyboardInterrupt, match="stopped by the user"):
            render_avatars(mannequin, two_walkers(4), front_camera(4), chunk_frames=1, progress=interrupt)
