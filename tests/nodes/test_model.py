"""AMG_LoadModel + AMG_AvatarConditioning sampled by the stock KSampler in a real ComfyUI."""

from __future__ import annotations

import pytest
from graphs import dump, empty_video, output_files, png_size, sample, save_images, text_and_vae


@pytest.mark.parametrize("unet", ["tiny_amg.pth", "tiny_amg.safetensors"])
def test_ksampler_runs_the_native_model(comfy, unet):
    prompt = {
        **text_and_vae(),
        **empty_video(8),
        **sample(["120", 0], unet=unet),
        **save_images(["113", 0], "ksampler"),
    }
    result = comfy.run(prompt)
    assert result["ok"], dump(result)
    files = output_files(comfy, result, "190")
    assert len(files) == 8
    assert all(png_size(f) == (64, 64) for f in files)
    assert (
        result["ws_types"].get("progress", 0) >= 2 or not result["ws_types"]
    )  # per-step progress of KSampler


def test_context_windows_48_frames(comfy):
    windows = {
        "130": {
            "class_type": "ContextWindowsManual",
            "inputs": {
                "model": ["110", 0],
                "context_length": 16,
                "context_overlap": 4,
                "context_schedule": "standard_static",
                "context_stride": 1,
                "closed_loop": False,
                "fuse_method": "pyramid",
                "dim": 0,
            },
        }
    }
    prompt = {
        **text_and_vae(),
        **empty_video(48),
        **sample(["120", 0], frames_model=["130", 0]),
        **windows,
        **save_images(["113", 0], "windows"),
    }
    result = comfy.run(prompt)
    assert result["ok"], dump(result)
    assert "Using context windows 16 for 48 frames" in comfy.log
    assert len(output_files(comfy, result, "190")) == 48
