"""The pack loads into a real ComfyUI: no import failure, every node listed with its public types."""

from __future__ import annotations

import re

EXPECTED_NODES = {
    "AMG_LoadModel": ["MODEL"],
    "AMG_AvatarConditioning": ["CONDITIONING", "CONDITIONING", "LATENT"],
}


def test_pack_imports_without_error(comfy):
    log = comfy.log
    assert "IMPORT FAILED" not in "".join(
        line for line in log.splitlines() if "main" in line or "amg" in line.lower()
    )
    assert re.search(r"seconds: .*custom_nodes", log), log[-2000:]
    assert "Traceback" not in log.split("Import times for custom nodes")[0].split("torchaudio")[-1]


def test_object_info_lists_every_node(comfy):
    info = comfy.client.object_info()
    for node, outputs in EXPECTED_NODES.items():
        assert node in info, f"{node} missing from /object_info"
        assert info[node]["output"] == outputs
        assert info[node]["category"].startswith("AMG/")


def test_model_folder_is_registered(comfy):
    info = comfy.client.object_info("AMG_LoadModel")["AMG_LoadModel"]
    options = info["input"]["required"]["unet_name"][1]["options"]
    assert {"tiny_amg.pth", "tiny_amg.safetensors"} <= set(options)
