"""The command line, run in-process on tiny settings."""

import sys
import types
from pathlib import Path

import cv2
import pytest
import torch

from amg_model import demo, demo_models
from amg_model.cli import main


def _frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_demo_writes_video_render_strip_and_scene(tmp_path, capsys):
    args = ["--frames", "4", "--size", "32", "--steps", "2", "--no-progress"]
    rc = main(["demo", "--out", str(tmp_path), *args])
    assert rc == 0
    video, render = tmp_path / "demo.mp4", tmp_path / "demo_avatars.mp4"
    strip, scene = tmp_path / "demo_strip.png", tmp_path / "demo_scene.png"
    for path, width in ((video, 64), (render, 32)):  # [avatar | generated], avatar alone
        assert _frame_count(path) == 4
        cap = cv2.VideoCapture(str(path))
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(8.0)
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (width, 32)
        cap.release()
    strip_img = cv2.imread(str(strip))
    assert strip_img.shape == (64, 128, 3)  # rows: avatar, generated; 4 frames of 32
    avatar_row = strip_img[:32]
    assert avatar_row.max() > 100 and (avatar_row.max(-1) == 0).mean() > 0.5  # avatars on black
    assert cv2.imread(str(scene)).shape == (256, 512, 3)
    out = capsys.readouterr().out
    assert "tiny random weights" in out
    assert all(f"wrote {p}" in out for p in (video, render, strip, scene))


def test_demo_motion_and_camera_choices_match_the_library():
    from amg_model.camera.presets import PRESET_NAMES
    from amg_model.cli import CAMERA_PRESETS, MOTION_KINDS
    from amg_model.smpl.procedural import KINDS

    assert set(MOTION_KINDS) == set(KINDS) and tuple(CAMERA_PRESETS) == tuple(PRESET_NAMES)


def test_demo_with_motion_and_camera_files(tmp_path):
    from amg_model import pipeline
    from amg_model.camera.serialize import save_camera_json
    from amg_model.smpl.formats import save_motion

    motion_path = save_motion(pipeline.make_motion("wave", 9, fps=24.0), tmp_path / "wave.npz")
    camera_path = tmp_path / "cam.json"
    save_camera_json(pipeline.make_camera("dolly", size=48, frames=5), camera_path)
    args = [
        "--frames",
        "3",
        "--size",
        "16",
        "--steps",
        "1",
        "--no-progress",
        "--motion-file",
        str(motion_path),
    ]
    assert main(["demo", "--out", str(tmp_path / "out"), *args, "--camera-file", str(camera_path)]) == 0
    assert _frame_count(tmp_path / "out" / "demo_avatars.mp4") == 3


def test_demo_long_clip_uses_windows(tmp_path, monkeypatch):
    seen = []
    real = demo_models._tiny_unet

    def recording_unet(context_dim, device, seed=0):
        net = real(context_dim, device, seed)
        return lambda x, t, c: (seen.append(x.shape[2]), net(x, t, c))[1]

    monkeypatch.setattr(demo_models, "_tiny_unet", recording_unet)
    result = demo.run_demo(tmp_path, frames=20, size=16, steps=1, progress=False)
    assert result.frames == 20 and _frame_count(result.video_path) == 20
    assert seen == [16, 16]


def test_demo_offload_option_reaches_the_pipeline(tmp_path, monkeypatch):
    from amg_model import pipeline

    seen = {}
    real = pipeline.generate_video

    def recording(*args, memory=None, **kwargs):
        seen["memory"] = memory
        return real(*args, memory=memory, **kwargs)

    monkeypatch.setattr(pipeline, "generate_video", recording)
    args = ["--frames", "4", "--size", "16", "--steps", "1", "--no-progress", "--offload", "--vae-chunk", "3"]
    assert main(["demo", "--out", str(tmp_path), *args]) == 0
    assert seen["memory"] == pipeline.MemoryOptions.low_vram(vae_chunk=3)


def test_render_conditioning_shape_and_range():
    frames = demo.render_conditioning(3, 32)
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == torch.float32
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0 and float(frames.max()) > 0.2


def test_bad_size_is_reported(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size", "30"]) == 2
    assert "multiple of 8" in capsys.readouterr().err


def test_reproduce_change_background_on_demo_data(tmp_path, monkeypatch, capsys):
    data = demo.default_data_dir()
    if not (data / "change_background.safetensors").is_file():
        pytest.skip(f"demo data not found at {data}")

    # A cheap stand-in: the full tiny UNet is slow at 32x32 latents on a CPU.
    def toy_unet(context_dim, device, seed=0):
        return lambda x, t, c: torch.tanh(x[:, :4] + x[:, 4:]) * 0.5

    monkeypatch.setattr(demo_models, "_tiny_unet", toy_unet)
    args = ["--reproduce", "change_background", "--steps", "2", "--no-progress"]
    rc = main(["demo", "--out", str(tmp_path), *args])
    assert rc == 0
    video = tmp_path / "forest_trail_autumn.mp4"
    assert _frame_count(video) == 16
    out = capsys.readouterr().out
    assert "ORIGINAL caption" in out and "latent preview" in out


def test_convert_calls_library_with_dtype(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("amg_model.model.checkpoint")
    fake.convert_checkpoint = lambda i, o, dtype: calls.append((i, o, dtype))
    monkeypatch.setitem(sys.modules, "amg_model.model.checkpoint", fake)
    assert main(["convert", "in.pth", str(tmp_path / "out.safetensors"), "--dtype", "bf16"]) == 0
    assert calls == [("in.pth", str(tmp_path / "out.safetensors"), "bf16")]


def test_convert_then_demo_with_converted_unet(tmp_path):
    from amg_model.model.tiny import make_original_state_dict

    pth = tmp_path / "tiny_original.pth"
    torch.save({"state_dict": make_original_state_dict(seed=1)}, pth)
    converted = tmp_path / "tiny.safetensors"
    assert main(["convert", str(pth), str(converted), "--dtype", "fp32"]) == 0
    assert converted.is_file()
    args = ["--unet", str(converted), "--frames", "2", "--size", "16", "--steps", "1", "--no-progress"]
    assert main(["demo", "--out", str(tmp_path / "out"), *args]) == 0
    assert _frame_count(tmp_path / "out" / "demo.mp4") == 2


def test_demo_with_vae_file_decodes_frames(tmp_path):
    from safetensors.torch import save_file

    from amg_model.model.vae import make_ldm_vae_state_dict

    vae_path = tmp_path / "tiny_vae.safetensors"
    save_file(make_ldm_vae_state_dict(seed=2, prefix="first_stage_model."), str(vae_path))
    args = ["--vae", str(vae_path), "--frames", "3", "--size", "16", "--steps", "1", "--no-progress"]
    assert main(["demo", "--out", str(tmp_path / "out"), *args]) == 0
    assert _frame_count(tmp_path / "out" / "demo.mp4") == 3
    assert cv2.imread(str(tmp_path / "out" / "demo_strip.png")).shape == (32, 48, 3)


def test_demo_with_an_smpl_body_file(tmp_path):
    from tests.fixtures.smpl_files import write_smpl_npz

    body = write_smpl_npz(tmp_path / "SMPL_NEUTRAL.npz", "smpl")
    args = ["--body", str(body), "--frames", "2", "--size", "16", "--steps", "1", "--no-progress"]
    assert main(["demo", "--out", str(tmp_path / "out"), *args]) == 0
    assert _frame_count(tmp_path / "out" / "demo_avatars.mp4") == 2
