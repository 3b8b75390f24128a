"""CameraCtrl / RealEstate10K interchange and the lossless JSON format."""

import json

import pytest
import torch

from amg_model.camera.cameractrl import (
    camera_from_cameractrl_rows,
    camera_to_cameractrl_rows,
    read_cameractrl_txt,
    write_cameractrl_txt,
)
from amg_model.camera.presets import camera_preset
from amg_model.camera.serialize import camera_from_dict, camera_to_dict, load_camera_json, save_camera_json
from amg_model.errors import CameraError

# A pose file in the RealEstate10K layout: URL line, then timestamp, normalised fx fy cx cy,
# two zeros and a row-major 3x4 world-to-camera matrix (identity rotation, moving along x).
POSE_TXT = """https://www.youtube.com/watch?v=abcdefghijk
1000000 0.5 0.8888888888888888 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0
1033367 0.5 0.8888888888888888 0.5 0.5 0 0 1 0 0 -0.1 0 1 0 0 0 0 1 0
"""


def orbit():
    return camera_preset("orbit", frames=5, width=640, height_px=360).to(dtype=torch.float64)


def assert_same_camera(a, b, atol=1e-9):
    assert (a.width, a.height) == (b.width, b.height)
    for name in ("fx", "fy", "cx", "cy", "w2c"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=atol), name


def test_read_realestate_file(tmp_path):
    path = tmp_path / "clip.txt"
    path.write_text(POSE_TXT)
    cam = read_cameractrl_txt(path, world="y_up")
    assert (cam.width, cam.height) == (1280, 720) and cam.num_frames == 2
    assert torch.allclose(cam.fx, torch.full((2,), 640.0, dtype=torch.float64))
    assert torch.allclose(cam.fy, torch.full((2,), 640.0, dtype=torch.float64))
    assert torch.allclose(cam.positions()[1], torch.tensor([0.1, 0.0, 0.0], dtype=torch.float64))
    # Default world: y-down foreign world, so the identity camera looks along our -z, image up = +y.
    ours = read_cameractrl_txt(path, scale=2.0)
    assert torch.allclose(
        ours.rotation_c2w()[0], torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    )
    assert torch.allclose(ours.positions()[1], torch.tensor([0.2, 0.0, 0.0], dtype=torch.float64))


def test_read_with_output_size_crops_like_cameractrl(tmp_path):
    path = tmp_path / "clip.txt"
    path.write_text(POSE_TXT)
    cam = read_cameractrl_txt(path, width=512, height=512)
    # 1280x720 -> 512x512: scaled by 512/720 and centre-cropped; square pixels stay square.
    assert torch.allclose(cam.fy, torch.full((2,), 640.0 * 512 / 720, dtype=torch.float64))
    assert torch.allclose(cam.fx, cam.fy) and torch.allclose(
        cam.cx, torch.full((2,), 256.0, dtype=torch.float64)
    )


@pytest.mark.parametrize("world", ["y_down", "y_up"])
def test_txt_round_trip(tmp_path, world):
    cam = orbit()
    path = tmp_path / "out.txt"
    write_cameractrl_txt(cam, path, scale=0.5, world=world)
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and len(lines[1].split()) == 19 and lines[1].split()[5:7] == ["0.0", "0.0"]
    back = read_cameractrl_txt(path, pose_size=(640, 360), scale=0.5, world=world)
    assert_same_camera(cam, back)


def test_rows_round_trip_and_layout():
    cam = orbit()
    rows = camera_to_cameractrl_rows(cam, fps=25.0)
    assert len(rows) == 5 and all(len(r) == 19 for r in rows)
    assert rows[1][0] == 40000.0 and rows[0][5:7] == [640.0, 360.0]
    assert rows[0][3:5] == [0.5, 0.5]
    back = camera_from_cameractrl_rows(rows)
    assert_same_camera(cam, back)


def test_rows_errors():
    with pytest.raises(CameraError, match="19"):
        camera_from_cameractrl_rows([[0.0] * 18])
    with pytest.raises(CameraError, match="no pose rows"):
        camera_from_cameractrl_rows([])
    row = camera_to_cameractrl_rows(orbit())[0]
    row[9] = float("nan")
    with pytest.raises(CameraError, match="NaN"):
        camera_from_cameractrl_rows([row])
    row[9] = 0.0
    with pytest.raises(CameraError, match="world"):
        camera_from_cameractrl_rows([row], world="z_up")


def test_txt_errors(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("url\n1 2 3\n")
    with pytest.raises(CameraError, match="bad.txt: line 2"):
        read_cameractrl_txt(path)
    with pytest.raises(CameraError, match="cannot be read"):
        read_cameractrl_txt(tmp_path / "missing.txt")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_json_round_trip_is_exact(tmp_path, dtype):
    cam = camera_preset("arc", frames=4).to(dtype=dtype)
    path = tmp_path / "cam.json"
    save_camera_json(cam, path)
    back = load_camera_json(path)
    assert back.w2c.dtype == dtype
    for name in ("fx", "fy", "cx", "cy", "w2c"):
        assert torch.equal(getattr(cam, name), getattr(back, name))


def test_json_errors(tmp_path):
    data = camera_to_dict(camera_preset("static", frames=2))
    with pytest.raises(CameraError, match="lacks"):
        camera_from_dict({k: v for k, v in data.items() if k != "w2c"})
    with pytest.raises(CameraError, match="not an 'amg-camera'"):
        camera_from_dict({"fx": []})
    data["fx"] = [1.0]
    with pytest.raises(CameraError, match="fx has shape"):
        camera_from_dict(json.loads(json.dumps(data)))
    path = tmp_path / "broken.json"
    path.write_text("{nope")
    with pytest.raises(CameraError, match="broken.json is not valid JSON"):
        load_camera_json(path)
