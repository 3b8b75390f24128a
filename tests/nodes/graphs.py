"""API-format prompt pieces shared by the real-ComfyUI tests (tiny models of conftest.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

TINY_UNET = "tiny_amg.pth"
TINY_CLIP = "tiny_clip_l.safetensors"
TINY_VAE = "tiny_taesd.safetensors"


def text_and_vae(prompt: str = "a person dancing on a beach") -> dict:
    """Nodes 100-103: CLIPLoader, positive/negative CLIPTextEncode, VAELoader."""
    return {
        "100": {"class_type": "CLIPLoader", "inputs": {"clip_name": TINY_CLIP, "type": "stable_diffusion"}},
        "101": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["100", 0], "text": prompt}},
        "102": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["100", 0], "text": ""}},
        "103": {"class_type": "VAELoader", "inputs": {"vae_name": TINY_VAE}},
    }


def sample(
    avatar_images: list, frames_model=None, steps: int = 2, unet: str = TINY_UNET, cfg: float = 3.0
) -> dict:
    """Nodes 110-113: AMG_LoadModel, AMG_AvatarConditioning on ``avatar_images``, KSampler (ddim), VAEDecode.

    ``frames_model`` replaces the MODEL input of the sampler (e.g. a context-windows node's output).
    """
    return {
        "110": {"class_type": "AMG_LoadModel", "inputs": {"unet_name": unet, "weight_dtype": "auto"}},
        "111": {
            "class_type": "AMG_AvatarConditioning",
            "inputs": {
                "positive": ["101", 0],
                "negative": ["102", 0],
                "vae": ["103", 0],
                "avatar_video": avatar_images,
            },
        },
        "112": {
            "class_type": "KSampler",
            "inputs": {
                "model": frames_model or ["110", 0],
                "positive": ["111", 0],
                "negative": ["111", 1],
                "latent_image": ["111", 2],
                "seed": 1,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": "ddim",
                "scheduler": "ddim_uniform",
                "denoise": 1.0,
            },
        },
        "113": {"class_type": "VAEDecode", "inputs": {"samples": ["112", 0], "vae": ["103", 0]}},
    }


def empty_video(frames: int, width: int = 64, height: int = 64) -> dict:
    """Node 120: a grey IMAGE batch standing in for an avatar render."""
    return {
        "120": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": height, "batch_size": frames, "color": 0x808080},
        }
    }


def save_images(images: list, prefix: str) -> dict:
    return {"190": {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": prefix}}}


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, from its header."""
    head = path.read_bytes()[:24]
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def output_files(server, result: dict, node: str, key: str = "images") -> list[Path]:
    """Files a node wrote under the run dir's output/ (from the prompt's history)."""
    items = result["history"]["outputs"].get(node, {}).get(key, [])
    return [
        server.run_dir / item.get("type", "output") / item.get("subfolder", "") / item["filename"]
        for item in items
    ]


def wait_until(predicate, timeout: float = 10.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def dump(result: dict) -> str:
    return json.dumps(result.get("error"), indent=1)[:3000]
