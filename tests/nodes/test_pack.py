"""The pack loads into a real ComfyUI: no import failure, every node listed with its public types."""

from __future__ import annotations

from conftest import REPO

EXPECTED_NODES = {  # public API: ids and output types
    "AMG_LoadModel": ["MODEL"],
    "AMG_AvatarConditioning": ["CONDITIONING", "CONDITIONING", "LATENT"],
    "AMG_LoadBodyModel": ["AMG_BODY_MODEL"],
    "AMG_LoadMotion": ["AMG_MOTION"],
    "AMG_ProceduralMotion": ["AMG_MOTION"],
    "AMG_EditMotion": ["AMG_MOTION"],
    "AMG_CombineMotions": ["AMG_MOTION"],
    "AMG_SaveMotion": [],
    "AMG_LoadPoseKeypoints": ["POSE_KEYPOINT"],
    "AMG_FitMotionToKeypoints": ["AMG_MOTION", "AMG_CAMERA"],
    "AMG_CameraTrajectory": ["AMG_CAMERA"],
    "AMG_CameraKeyframes": ["AMG_CAMERA"],
    "AMG_CameraFromPoses": ["AMG_CAMERA"],
    "AMG_CameraToPoses": ["CAMERACTRL_POSES"],
    "AMG_LoadCamera": ["AMG_CAMERA"],
    "AMG_RenderAvatars": ["IMAGE", "MASK", "IMAGE", "IMAGE"],
    "AMG_PreviewScene": ["IMAGE"],
}


def test_pack_imports_without_error(comfy):
    lines = comfy.log.splitlines()
    ours = [line for line in lines if line.rstrip().endswith(f"custom_nodes/{REPO.name}")]
    assert ours, "the pack is not in the server's import list"
    assert all("IMPORT FAILED" not in line for line in ours), ours
    assert not [line for line in lines if "Cannot import" in line and REPO.name in line]
    assert not [line for line in lines if "comfy_entrypoint" in line], "the entry point failed"


def test_object_info_lists_every_node(comfy):
    info = comfy.client.object_info()
    for node, outputs in EXPECTED_NODES.items():
        assert node in info, f"{node} missing from /object_info"
        assert info[node]["output"] == outputs
        assert info[node]["category"].startswith("AMG/")


def test_every_input_has_a_default_and_a_tooltip(comfy):
    info = comfy.client.object_info()
    links = {"MODEL", "CONDITIONING", "VAE", "IMAGE", "LATENT", "POSE_KEYPOINT", "CAMERACTRL_POSES"}
    for node in EXPECTED_NODES:
        for section in ("required", "optional"):
            for name, (kind, *opts) in info[node]["input"].get(section, {}).items():
                options = opts[0] if opts else {}
                assert options.get("tooltip"), f"{node}.{name} has no tooltip"
                if kind in links or str(kind).startswith("AMG_"):
                    continue
                has_default = (
                    "default" in options
                    or (kind == "COMBO" and node in ("AMG_LoadModel",))
                    or (kind == "COMBO" and name.endswith("_file"))
                )
                assert has_default, f"{node}.{name} has no default"


def test_model_folder_is_registered(comfy):
    info = comfy.client.object_info("AMG_LoadModel")["AMG_LoadModel"]
    options = info["input"]["required"]["unet_name"][1]["options"]
    assert {"tiny_amg.pth", "tiny_amg.safetensors"} <= set(options)


def test_upload_buttons_register_in_the_frontend(comfy, tmp_path):
    """The pack's JS extension (upload buttons of the file loaders) loads in the frontend without errors."""
    import json
    import os
    import shutil
    import subprocess

    import pytest

    if shutil.which("node") is None:
        pytest.skip("node is not installed: the frontend check needs the harness's browser set-up")
    frontend = os.path.join(os.environ["AMG_COMFYUI_HARNESS"], "frontend.mjs")
    run = subprocess.run(
        ["node", frontend, "--port", str(comfy.port), "screenshot", str(tmp_path / "app.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert "amg.fileUpload" in report["extensions"]
    assert report["pageErrors"] == []
