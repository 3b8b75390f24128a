"""Real-ComfyUI fixtures: one server per test session, started through the ComfyUI test harness.

The harness folder comes only from the environment variable AMG_COMFYUI_HARNESS (scripts/test.sh
exports it when the harness is installed); without it every test here is skipped with that reason.
The server gets this pack, a temporary run dir (input/, output/) and tiny generated models:
    models/amg            tiny AMG UNets (original .pth layout with LoRA, and converted .safetensors)
    models/text_encoders  a random CLIP-L (ComfyUI's smallest CLIPLoader text encoder; the tiny UNet
                          is built with a 768-wide context to match it)
    models/vae            a random TAESD (a VAE file ComfyUI's VAELoader accepts, with any weights)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HARNESS = os.environ.get("AMG_COMFYUI_HARNESS")
SKIP_REASON = "AMG_COMFYUI_HARNESS is not set: no ComfyUI test harness, real-ComfyUI tests skipped"


def pytest_collection_modifyitems(config, items):
    if HARNESS:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(skip)


def harness_home() -> Path:
    """The harness's state folder (its venv and ComfyUI tree), as the harness scripts define it."""
    return Path(os.environ.get("AMG_COMFYUI_HOME", "~/.cache/amg-comfyui-harness")).expanduser()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def comfy_fixture_models(dest: Path) -> None:
    """Copy the random CLIP-L and TAESD into ``dest`` (built once per script version, then cached)."""
    script = HERE / "make_comfy_fixtures.py"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()[:12]
    cache = harness_home() / "cache" / f"amg-test-models-{digest}"
    if not (cache / "done").exists():
        python = harness_home() / "venv" / "bin" / "python"
        subprocess.run(
            [str(python), str(script), str(harness_home() / "ComfyUI"), str(cache)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=300,
        )
        (cache / "done").write_text("ok")
    for sub in ("text_encoders", "vae", "input"):
        shutil.copytree(cache / sub, dest / sub, dirs_exist_ok=True)


def amg_fixture_models(dest: Path) -> None:
    """Tiny AMG UNets with a 768-wide text context: original layout (.pth, LoRA) and converted safetensors."""
    import torch

    from amg_model.model.checkpoint import convert_checkpoint
    from amg_model.model.tiny import make_original_state_dict, tiny_unet_config

    config = dataclasses.replace(tiny_unet_config(), cross_attention_dim=768)
    (dest / "amg").mkdir(parents=True, exist_ok=True)
    torch.save(
        {"state_dict": make_original_state_dict(config, seed=0, lora_rank=2)}, dest / "amg" / "tiny_amg.pth"
    )
    convert_checkpoint(dest / "amg" / "tiny_amg.pth", dest / "amg" / "tiny_amg.safetensors", dtype="fp32")
    (dest / "amg" / "corrupt_amg.safetensors").write_bytes(b"\x00" * 64)


def keypoints_fixture(path: Path, frames: int = 8, size: int = 64) -> None:
    """An OpenPose JSON (POSE_KEYPOINT frames, pixels) of a mannequin walking in front of a static camera."""
    from amg_model.camera.presets import camera_preset
    from amg_model.smpl.body import load_body_model
    from amg_model.smpl.keypoints import smpl_to_coco18
    from amg_model.smpl.procedural import procedural_motion

    motion = procedural_motion("walk", frames=frames, fps=8.0)
    posed = load_body_model("mannequin").pose_person(motion.persons[0])
    camera = camera_preset("static", frames=frames, width=size, height_px=size, distance=4.0)
    uv, _ = camera.project(smpl_to_coco18(posed.joints, posed.face_landmarks))
    rows = [
        {
            "people": [{"pose_keypoints_2d": [v for x, y in uv[f].tolist() for v in (x, y, 0.9)]}],
            "canvas_width": size,
            "canvas_height": size,
        }
        for f in range(frames)
    ]
    path.write_text(json.dumps(rows))


def motion_fixture(path: Path, frames: int = 24, fps: float = 24.0) -> None:
    """A walking motion saved in the pack's .npz format."""
    from amg_model.smpl.formats import save_motion
    from amg_model.smpl.procedural import procedural_motion

    save_motion(procedural_motion("walk", frames=frames, fps=fps), path)


def camera_fixture(path: Path, frames: int = 8, size: int = 64) -> None:
    """A static camera saved as the library's camera JSON."""
    from amg_model.camera.presets import camera_preset
    from amg_model.camera.serialize import save_camera_json

    save_camera_json(camera_preset("static", frames=frames, width=size, height_px=size), path)


class Server:
    """A running ComfyUI with this pack: port, run dir, and a harness client."""

    def __init__(self, port: int, run_dir: Path, models: Path):
        sys.path.insert(0, HARNESS)
        from client import Comfy  # the harness's client

        self.port, self.run_dir, self.models = port, run_dir, models
        self.client = Comfy(port=port, timeout=300)

    @property
    def log(self) -> str:
        return (self.run_dir / "comfy.log").read_text(errors="replace")

    def run(self, prompt: dict, timeout: float = 300) -> dict:
        """Queue an API prompt (widget inputs left out take their schema defaults) and wait for it."""
        return self.client.run(self.with_defaults(prompt), timeout=timeout)

    def with_defaults(self, prompt: dict) -> dict:
        if not hasattr(self, "_info"):
            self._info = self.client.object_info()
        for node in prompt.values():
            spec = self._info[node["class_type"]]["input"]
            for section in ("required", "optional"):
                for name, (kind, *opts) in spec.get(section, {}).items():
                    options = opts[0] if opts else {}
                    if name in node["inputs"]:
                        continue
                    if "default" in options:
                        node["inputs"][name] = options["default"]
                    elif kind == "COMBO" and options.get("options"):
                        node["inputs"][name] = options["options"][0]
                    elif isinstance(kind, list) and kind:
                        node["inputs"][name] = kind[0]
        return prompt

    def video_info(self, path: Path) -> dict:
        """Frames, width and height of a video file (read with PyAV in the harness's Python)."""
        python = harness_home() / "venv" / "bin" / "python"
        out = subprocess.run(
            [str(python), str(HERE / "make_comfy_fixtures.py"), "--video-info", str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return json.loads(out.stdout)

    def convert_ui(self, ui_workflow: dict) -> dict:
        """A UI-format workflow in API format, by the harness's converter and the live /object_info."""
        sys.path.insert(0, HARNESS)
        from ui_to_api import convert

        prompt, warnings = convert(ui_workflow, self.client.object_info())
        assert not warnings, warnings
        return prompt


@pytest.fixture(scope="session")
def comfy(tmp_path_factory) -> Server:
    if not HARNESS:
        pytest.skip(SKIP_REASON)
    root = tmp_path_factory.mktemp("comfy")
    models = root / "models"
    comfy_fixture_models(models)
    amg_fixture_models(models)
    yaml = root / "extra_model_paths.yaml"
    yaml.write_text(
        "amg_tests:\n"
        f"    base_path: {models}\n"
        "    amg: amg\n    text_encoders: text_encoders\n    vae: vae\n    smpl: smpl\n"
    )
    port = free_port()
    env = dict(os.environ, RUN_DIR=str(root / "run"))
    start = [
        "bash",
        os.path.join(HARNESS, "start.sh"),
        str(port),
        "--pack",
        str(REPO),
        "--",
        "--extra-model-paths-config",
        str(yaml),
        "--disable-api-nodes",
        "--preview-method",
        "latent2rgb",
    ]
    proc = subprocess.run(start, env=env, capture_output=True, text=True, timeout=400)
    if proc.returncode != 0:
        pytest.fail(f"ComfyUI did not start: {proc.stderr[-2000:]}")
    server = Server(port, root / "run", models)
    inputs = root / "run" / "input"
    shutil.copy(models / "input" / "dance.mp4", inputs / "dance.mp4")
    keypoints_fixture(inputs / "dance_keypoints.json")
    motion_fixture(inputs / "motion.npz")
    camera_fixture(inputs / "camera.json")
    try:
        yield server
    finally:
        subprocess.run(
            ["bash", os.path.join(HARNESS, "stop.sh"), str(port)], env=env, capture_output=True, timeout=60
        )
