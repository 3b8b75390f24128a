"""The three example workflows, converted from UI format, run end to end on tiny models.

Changed from the files, so that they run on a CPU in seconds: the model files (the tiny AMG UNet,
a random CLIP-L instead of SD 2.1's OpenCLIP ViT-H, a random TAESD instead of the SD VAE: the
text and VAE loaders stay the same nodes), 8 frames instead of 16, 64 x 64 pixels instead of
256 x 256, 2 sampling steps and 20 fitting iterations. Everything else (nodes, links, other
widget values) is as shipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from graphs import TINY_CLIP, TINY_VAE, dump, output_files

FRAMES, SIZE = 8, 64
TINY = {
    "AMG_LoadModel": {"unet_name": "tiny_amg.safetensors"},
    "CLIPLoader": {"clip_name": TINY_CLIP},
    "VAELoader": {"vae_name": TINY_VAE},
    "AMG_CameraTrajectory": {"frames": FRAMES, "width": SIZE, "height": SIZE},
    "AMG_ProceduralMotion": {"frames": FRAMES},
    "AMG_RenderAvatars": {"width": SIZE, "height": SIZE, "supersample": 1},
    "ImageFromBatch": {"length": FRAMES},
    "ImageScale": {"width": SIZE, "height": SIZE},
    "KSampler": {"steps": 2},
    "AMG_FitMotionToKeypoints": {"iterations": 20},
    "AMG_PreviewScene": {"size": 128},
}


def tiny(prompt: dict) -> dict:
    for node in prompt.values():
        node["inputs"].update(TINY.get(node["class_type"], {}))
        if node["class_type"] == "AMG_EditMotion" and node["inputs"]["operation"] == "loop":
            node["inputs"]["frames"] = FRAMES
    return prompt


def saved_videos(comfy, result: dict, prompt: dict) -> dict[str, dict]:
    """{filename_prefix: video info} of every SaveVideo node."""
    out = {}
    for node_id, node in prompt.items():
        if node["class_type"] == "SaveVideo":
            files = output_files(comfy, result, node_id)
            assert len(files) == 1, f"SaveVideo {node_id} wrote {files}"
            out[node["inputs"]["filename_prefix"]] = comfy.video_info(files[0])
    return out


WORKFLOWS = {"change_background": 2 * SIZE, "move_camera": SIZE, "change_motion": SIZE}  # generated width


@pytest.mark.parametrize("name, generated_width", list(WORKFLOWS.items()))
def test_workflow_runs(comfy, name, generated_width):
    ui = json.loads((REPO / "workflows" / f"{name}.json").read_text())
    assert (REPO / "workflows" / f"{name}.jpg").is_file()
    prompt = tiny(comfy.convert_ui(ui))
    result = comfy.run(prompt)
    assert result["ok"], dump(result)
    videos = saved_videos(comfy, result, prompt)
    assert videos[f"amg/{name}"] == {"frames": FRAMES, "width": generated_width, "height": SIZE}
    assert videos[f"amg/{name}_avatars"] == {"frames": FRAMES, "width": SIZE, "height": SIZE}


def test_workflows_are_templates(comfy):
    """ComfyUI's template browser lists each workflow once and serves it with its thumbnail."""
    templates = comfy.client.get("/workflow_templates")[REPO.name]
    assert sorted(templates) == sorted(WORKFLOWS)
    for name in WORKFLOWS:
        served = comfy.client.get(f"/api/workflow_templates/{REPO.name}/{name}.json")
        assert served == json.loads((REPO / "workflows" / f"{name}.json").read_text())
        assert comfy.client.get(f"/api/workflow_templates/{REPO.name}/{name}.jpg")[:2] == b"\xff\xd8"


def test_frontend_converts_like_the_python_converter(comfy, tmp_path):
    """The real web frontend (headless Chromium) loads the three workflows and queues the same prompts."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the frontend check needs the harness's browser set-up")
    harness = Path(os.environ["AMG_COMFYUI_HARNESS"])
    port = str(comfy.port)
    fe = subprocess.run(
        [
            "node",
            str(harness / "frontend.mjs"),
            "--port",
            port,
            "batch-ui2api",
            str(REPO / "workflows"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fe.returncode == 0, fe.stderr[-2000:]
    cmp = subprocess.run(
        [
            sys.executable,
            str(harness / "compare_converters.py"),
            str(REPO / "workflows"),
            str(tmp_path),
            "--port",
            port,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = json.loads(cmp.stdout)
    assert summary["identical"] == len(WORKFLOWS) and summary["different"] == 0, summary
