"""AMG_LoadModel + AMG_AvatarConditioning sampled by the stock KSampler in a real ComfyUI."""

from __future__ import annotations

import pytest
from conftest import HERE, REPO, harness_home
from graphs import dump, empty_video, output_files, png_size, sample, save_images, text_and_vae


@pytest.mark.parametrize("unet, weight_dtype", [("tiny_amg.pth", "auto"), ("tiny_amg.safetensors", "fp16")])
def test_ksampler_runs_the_native_model(comfy, unet, weight_dtype):
    prompt = {
        **text_and_vae(),
        **empty_video(8),
        **sample(["120", 0], unet=unet),
        **save_images(["113", 0], "ksampler"),
    }
    prompt["110"]["inputs"]["weight_dtype"] = (
        weight_dtype  # fp16 weights run with a float32 manual cast on a CPU
    )
    result = comfy.run(prompt)
    assert result["ok"], dump(result)
    files = output_files(comfy, result, "190")
    assert len(files) == 8
    assert all(png_size(f) == (64, 64) for f in files)
    assert (
        result["ws_types"].get("progress", 0) >= 2 or not result["ws_types"]
    )  # per-step progress of KSampler


def test_progress_and_previews_reach_the_websocket(comfy, tmp_path):
    """KSampler on the native model sends per-step progress and latent preview images (ws binary type 1)."""
    import json
    import os
    import subprocess
    import sys

    prompt = {
        **text_and_vae(),
        **empty_video(4),
        **sample(["120", 0], steps=3),
        **save_images(["113", 0], "p"),
    }
    prompt = comfy.with_defaults(prompt)
    prompt["112"]["inputs"]["seed"] = 11  # not cached by an earlier test
    (tmp_path / "prompt.json").write_text(json.dumps(prompt))
    client = os.path.join(
        os.environ["AMG_COMFYUI_HARNESS"], "client.py"
    )  # re-runs itself with websocket-client
    run = subprocess.run(
        [sys.executable, client, "run", str(tmp_path / "prompt.json"), "--port", str(comfy.port), "--out",
         str(tmp_path / "result.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    ws_types = json.loads((tmp_path / "result.json").read_text())["ws_types"]
    assert ws_types.get("progress", 0) >= 3, ws_types
    assert ws_types.get("<binary:1>", 0) >= 1, ws_types


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


def test_ksampler_ddim_matches_the_library_sampler(comfy):
    """KSampler (ddim, ddim_uniform) on the native model follows AMG's own DDIM sampler step for step.

    Both conditionings are zeroed (ComfyUI's text encoder output cannot be read back), so the check
    covers the wrapper (frame regrouping, avatar concatenation and scaling, timesteps) and the
    schedule. ComfyUI starts from ``sqrt(1 - alpha_bar_951) * noise`` and ends on the clean
    prediction of the last step; the library is given the same start and compared on that prediction.
    """
    import torch
    from safetensors.torch import load_file

    from amg_model.model.checkpoint import load_unet
    from amg_model.sampling.sample import sample_video
    from amg_model.sampling.schedule import alphas_cumprod, ddim_timesteps

    frames, steps, seed = 4, 3, 7
    prompt = {**text_and_vae(), **empty_video(frames), **sample(["120", 0], steps=steps, cfg=3.0)}
    prompt["112"]["inputs"]["seed"] = seed
    prompt["131"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["101", 0]}}
    prompt["111"]["inputs"].update(positive=["131", 0], negative=["131", 0])
    prompt["132"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["120", 0], "vae": ["103", 0]}}
    prompt["133"] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": ["132", 0], "filename_prefix": "parity/avatar"},
    }
    prompt["134"] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": ["112", 0], "filename_prefix": "parity/out"},
    }
    result = comfy.run(prompt)
    assert result["ok"], dump(result)
    avatar = load_file(output_files(comfy, result, "133", "latents")[0])["latent_tensor"]  # [F, 4, h, w]
    comfy_out = load_file(output_files(comfy, result, "134", "latents")[0])["latent_tensor"]

    torch.manual_seed(seed)
    noise = torch.randn(comfy_out.shape)  # ComfyUI's noise: the default generator, seeded, latent shape
    first_t = int(ddim_timesteps(steps)[0])  # 667 for 3 steps, 951 for 20
    start = noise * (1 - alphas_cumprod()[first_t]).sqrt()
    to_video = lambda x: x.transpose(0, 1)[None]  # noqa: E731  [F, 4, h, w] -> [1, 4, F, h, w]
    last = {}
    unet = load_unet(comfy.models / "amg" / "tiny_amg.pth")
    context = torch.zeros(1, 77, 768)
    with torch.no_grad():
        keep_x0 = lambda i, n, t, x, x0: last.update(x0=x0)  # noqa: E731
        sample_video(unet, to_video(avatar * 0.18215), context, context, steps=steps, guidance=3.0,
                     noise=to_video(start), callback=keep_x0)  # fmt: skip
    expected = last["x0"][0].transpose(0, 1) / 0.18215
    assert torch.allclose(comfy_out.float(), expected.float(), atol=1e-3, rtol=1e-3), (
        (comfy_out - expected).abs().max()
    )


def test_text_conds_on_the_device_and_graphs_freed_on_unload():
    """ComfyUI's own modules in-process (model_inprocess.py): the text conditioning moves to the device
    once per run, and unloading the MODEL releases its CUDA graphs while swapping clones keeps them."""
    import subprocess

    python = harness_home() / "venv" / "bin" / "python"
    script = HERE / "model_inprocess.py"
    run = subprocess.run(
        [str(python), str(script), str(harness_home() / "ComfyUI"), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout[-2000:] + run.stderr[-2000:]
