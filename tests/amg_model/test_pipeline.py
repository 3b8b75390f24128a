"""The avatar pipeline (amg_model.pipeline) on tiny sizes: motion, ground, camera, render, generate."""

from dataclasses import replace

import pytest
import torch

from amg_model import pipeline
from amg_model.smpl.body import load_body_model

F = 4
SIZE = 32


@pytest.fixture(scope="module")
def body():
    return load_body_model("mannequin")


@pytest.fixture(scope="module")
def walk(body):
    return pipeline.place_on_ground(pipeline.make_motion("walk", F), body)


def test_motion_is_made_at_the_video_frame_rate():
    motion = pipeline.make_motion("run", 6)
    assert motion.num_frames == 6 and motion.fps == pipeline.VIDEO_FPS == 8


def test_place_on_ground_puts_the_lowest_vertex_of_the_clip_on_y0(body, walk):
    lifted = replace(
        walk, persons=[replace(p, transl=p.transl + torch.tensor([0.0, 0.4, 0.0])) for p in walk.persons]
    )
    grounded = pipeline.place_on_ground(lifted, body)
    verts = pipeline.pose_vertices(body, grounded)[0]
    assert float(verts[..., 1].min()) == pytest.approx(0.0, abs=1e-5)
    # one offset for the whole clip: the step heights between frames are kept
    before = pipeline.pose_vertices(body, lifted)[0][..., 1].amin(1)
    after = verts[..., 1].amin(1)
    torch.testing.assert_close(after - after[0], before - before[0], atol=1e-5, rtol=0)


def test_camera_aims_at_the_subject_centre(body, walk):
    camera = pipeline.make_camera("orbit", walk, body, SIZE)
    assert camera.num_frames == F and (camera.width, camera.height) == (SIZE, SIZE)
    centre = pipeline.subject_target(walk, body)  # [F, 3]
    uv, depth = camera.project(centre[:, None])
    torch.testing.assert_close(uv[:, 0], torch.full((F, 2), SIZE / 2.0), atol=1e-3, rtol=0)
    assert (depth > 0).all()


def test_render_gives_avatars_on_black(body, walk):
    camera = pipeline.make_camera("orbit", walk, body, SIZE)
    frames = pipeline.render_avatar_video(body, walk, camera, SIZE)
    assert frames.shape == (F, SIZE, SIZE, 3) and frames.dtype == torch.float32
    lit = frames.amax(-1) > 0.05  # [F, S, S]
    assert lit.flatten(1).any(1).all(), "every frame shows the avatar"
    assert lit.float().mean() < 0.5, "most of the frame is background"
    border = torch.cat([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], dim=1)
    assert float(border.max()) == 0.0, "the background is pure black"


def test_render_refuses_a_camera_of_another_length(body, walk):
    camera = pipeline.make_camera("static", walk, body, SIZE, frames=F + 1)
    with pytest.raises(pipeline.PipelineError, match="frames"):
        pipeline.render_avatar_video(body, walk, camera)


def test_motion_file_is_resampled_to_the_video_rate_and_padded(tmp_path, body):
    from amg_model.smpl.formats import save_motion

    path = save_motion(pipeline.make_motion("walk", 13, fps=24.0), tmp_path / "walk.npz")  # 0.5 s
    clip = pipeline.load_motion_clip(path, 6, body_type=body.body_type)
    assert clip.fps == 8 and clip.num_frames == 6
    p = clip.persons[0]
    # 0.5 s at 8 fps is 5 frames; the 6th holds the last pose
    torch.testing.assert_close(p.transl[5], p.transl[4])
    assert not torch.allclose(p.transl[4], p.transl[0])


def test_camera_files_are_fitted_to_the_clip(tmp_path, body, walk):
    from amg_model.camera.cameractrl import write_cameractrl_txt
    from amg_model.camera.serialize import save_camera_json

    orbit = pipeline.make_camera("orbit", walk, body, 64, frames=8)
    save_camera_json(orbit, tmp_path / "orbit.json")
    cam = pipeline.load_camera_file(tmp_path / "orbit.json", F, SIZE)
    assert cam.num_frames == F and (cam.width, cam.height) == (SIZE, SIZE)
    torch.testing.assert_close(cam.w2c[[0, -1]], orbit.w2c[[0, -1]])

    write_cameractrl_txt(orbit, tmp_path / "orbit.txt")
    anchor = pipeline.make_camera("static", walk, body, SIZE, follow=False)
    cam = pipeline.load_camera_file(tmp_path / "orbit.txt", F, SIZE, anchor=anchor)
    assert cam.num_frames == F
    torch.testing.assert_close(cam.w2c[0], anchor.w2c[0], atol=1e-5, rtol=0)
    with pytest.raises(pipeline.PipelineError, match="camera files"):
        pipeline.load_camera_file(tmp_path / "orbit.csv", F, SIZE)


def test_generate_video_returns_the_frames_of_the_render():
    from amg_model.demo_models import _tiny_unet
    from amg_model.model.text import tiny_text_encoder
    from amg_model.model.vae import tiny_vae

    frames = torch.rand(3, 16, 24, 3)
    seen = []

    unet = _tiny_unet(32, torch.device("cpu"))

    def recording(x, t, c):
        seen.append(tuple(x.shape))
        return unet(x, t, c)

    out = pipeline.generate_video(recording, tiny_vae(), tiny_text_encoder(32), frames, "a person", steps=2)
    assert out.shape == (3, 16, 24, 3) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert seen == [(2, 8, 3, 2, 3)] * 2  # [x_t | avatar] for the negative and the prompt, 2 steps
    with pytest.raises(pipeline.PipelineError, match="multiples of 8"):
        pipeline.generate_video(recording, tiny_vae(), tiny_text_encoder(32), frames[:, :12], "a person")
