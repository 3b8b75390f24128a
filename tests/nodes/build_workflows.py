"""Builds the example workflows (UI format) from the API-format graphs below.

Development tool, not a test: it needs a running ComfyUI with this pack (the test harness) and
converts each graph with the real frontend (``frontend.mjs api2ui``), lays the nodes out in
columns, and writes ``workflows/<name>.json`` with a ``.jpg`` thumbnail. (ComfyUI's template
browser lists a pack's ``workflows/`` folder as it does ``example_workflows/``; having both would
list every workflow twice.)

    python tests/nodes/build_workflows.py --harness DIR --port PORT
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

UNET = "non_ema_0640000.pth"
CLIP = "open_clip_pytorch_model.bin"
VAE = "vae-ft-mse-840000-ema-pruned.safetensors"
FRAMES, SIZE, FPS = 16, 256, 8.0
BODY = {
    "class_type": "AMG_LoadBodyModel",
    "inputs": {"body_model": "mannequin (built-in)", "gender": "neutral", "num_betas": 10},
}


def generation(render: list, prompt: str, title: str) -> dict:
    """Text, VAE, model, avatar conditioning, KSampler (the original sampler's settings), decode."""
    return {
        "20": {"class_type": "CLIPLoader", "inputs": {"clip_name": CLIP, "type": "stable_diffusion"}},
        "21": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["20", 0], "text": prompt}},
        "22": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["20", 0], "text": ""}},
        "23": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
        "24": {"class_type": "AMG_LoadModel", "inputs": {"unet_name": UNET, "weight_dtype": "auto"}},
        "25": {
            "class_type": "AMG_AvatarConditioning",
            "inputs": {
                "positive": ["21", 0],
                "negative": ["22", 0],
                "vae": ["23", 0],
                "avatar_video": render,
            },
        },
        "26": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["24", 0],
                "positive": ["25", 0],
                "negative": ["25", 1],
                "latent_image": ["25", 2],
                "seed": 42,
                "steps": 20,
                "cfg": 3.0,
                "sampler_name": "ddim",
                "scheduler": "ddim_uniform",
                "denoise": 1.0,
            },
        },
        "27": {"class_type": "VAEDecode", "inputs": {"samples": ["26", 0], "vae": ["23", 0]}},
        "30": {"class_type": "CreateVideo", "inputs": {"images": render, "fps": FPS}},
        "31": {
            "class_type": "SaveVideo",
            "inputs": {
                "video": ["30", 0],
                "filename_prefix": f"amg/{title}_avatars",
                "format": "auto",
                "codec": "auto",
            },
        },
    }


def render_node(motion: list, camera: list) -> dict:
    return {
        "10": {
            "class_type": "AMG_RenderAvatars",
            "inputs": {
                "body_model": ["1", 0],
                "motion": motion,
                "camera": camera,
                "width": SIZE,
                "height": SIZE,
                "appearance": "casual",
                "supersample": 2,
                "lighting": True,
            },
        }
    }


def save_generated(images: list, title: str) -> dict:
    return {
        "40": {"class_type": "CreateVideo", "inputs": {"images": images, "fps": FPS}},
        "41": {
            "class_type": "SaveVideo",
            "inputs": {
                "video": ["40", 0],
                "filename_prefix": f"amg/{title}",
                "format": "auto",
                "codec": "auto",
            },
        },
    }


def change_background() -> dict:
    g = {
        "1": BODY,
        "2": {"class_type": "LoadVideo", "inputs": {"file": "dance.mp4"}},
        "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
        "4": {"class_type": "AMG_LoadPoseKeypoints", "inputs": {"keypoints_file": "dance_keypoints.json"}},
        "5": {
            "class_type": "AMG_FitMotionToKeypoints",
            "inputs": {
                "body_model": ["1", 0],
                "pose_keypoint": ["4", 0],
                "image_width": 0,
                "image_height": 0,
                "fov_deg": 50.0,
                "iterations": 300,
                "fps": FPS,
            },
        },
        "6": {
            "class_type": "ImageFromBatch",
            "inputs": {"image": ["3", 0], "batch_index": 0, "length": FRAMES},
        },
        "7": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["6", 0],
                "upscale_method": "bilinear",
                "width": SIZE,
                "height": SIZE,
                "crop": "center",
            },
        },
        "42": {
            "class_type": "ImageStitch",
            "inputs": {
                "image1": ["7", 0],
                "image2": ["27", 0],
                "direction": "right",
                "match_image_size": True,
                "spacing_width": 0,
                "spacing_color": "white",
            },
        },
    }
    g |= render_node(["5", 0], ["5", 1])
    g |= generation(
        ["10", 0], "a dancer on a sunny beach, palm trees, ocean, photorealistic", "change_background"
    )
    g |= save_generated(["42", 0], "change_background")
    return g


def move_camera() -> dict:
    g = {
        "1": BODY,
        "2": {
            "class_type": "AMG_LoadMotion",
            "inputs": {"motion_file": "motion.npz", "format": "auto", "fps": 0.0},
        },
        "3": {
            "class_type": "AMG_EditMotion",
            "inputs": {
                "motion": ["2", 0],
                "operation": "resample",
                "start": 0,
                "end": 0,
                "frames": FRAMES,
                "fps": FPS,
                "yaw_deg": 90.0,
                "x": 0.0,
                "y": 0.0,
                "z": 0.0,
                "persons": "",
            },
        },
        "4": {
            "class_type": "AMG_EditMotion",
            "inputs": {
                "motion": ["3", 0],
                "operation": "loop",
                "start": 0,
                "end": 0,
                "frames": FRAMES,
                "fps": FPS,
                "yaw_deg": 90.0,
                "x": 0.0,
                "y": 0.0,
                "z": 0.0,
                "persons": "",
            },
        },
        "5": {
            "class_type": "AMG_CameraTrajectory",
            "inputs": {
                "preset": "orbit",
                "frames": FRAMES,
                "width": SIZE,
                "height": SIZE,
                "distance": 3.5,
                "camera_height": 1.2,
                "angle_deg": 0.0,
                "fov_deg": 45.0,
                "amount": 0.0,
                "direction": "default",
                "easing": "ease_in_out",
                "target_x": 0.0,
                "target_y": 1.0,
                "target_z": 0.0,
            },
        },
        "6": {
            "class_type": "AMG_PreviewScene",
            "inputs": {"motion": ["4", 0], "camera": ["5", 0], "body_model": ["1", 0], "size": 512},
        },
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    g |= render_node(["4", 0], ["5", 0])
    g |= generation(
        ["10", 0], "a person in a red jacket in a snowy mountain village, photorealistic", "move_camera"
    )
    g |= save_generated(["27", 0], "move_camera")
    return g


def change_motion() -> dict:
    g = {
        "1": BODY,
        "2": {"class_type": "AMG_LoadPoseKeypoints", "inputs": {"keypoints_file": "dance_keypoints.json"}},
        "3": {
            "class_type": "AMG_FitMotionToKeypoints",
            "inputs": {
                "body_model": ["1", 0],
                "pose_keypoint": ["2", 0],
                "image_width": 0,
                "image_height": 0,
                "fov_deg": 50.0,
                "iterations": 300,
                "fps": FPS,
            },
        },
        "4": {
            "class_type": "AMG_ProceduralMotion",
            "inputs": {
                "kind": "wave",
                "frames": FRAMES,
                "fps": FPS,
                "speed": 1.0,
                "body_type": "mannequin",
                "angle_deg": 180.0,
                "hand": "right",
            },
        },
        "6": {
            "class_type": "AMG_PreviewScene",
            "inputs": {"motion": ["4", 0], "camera": ["3", 1], "body_model": ["1", 0], "size": 512},
        },
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    g |= render_node(["4", 0], ["3", 1])
    g |= generation(
        ["10", 0], "a person waving in a busy city street at night, photorealistic", "change_motion"
    )
    g |= save_generated(["27", 0], "change_motion")
    return g


WORKFLOWS = {
    "change_background": change_background,
    "move_camera": move_camera,
    "change_motion": change_motion,
}


def layout(ui: dict) -> dict:
    """Place nodes in columns by graph depth (sources left), in id order within a column."""
    links = {link[0]: link for link in ui["links"]}
    parents = {
        n["id"]: [links[i["link"]][1] for i in n.get("inputs", []) if i.get("link") is not None]
        for n in ui["nodes"]
    }
    depth: dict[int, int] = {}

    def d(node: int) -> int:
        if node not in depth:
            depth[node] = 1 + max((d(p) for p in parents[node]), default=-1)
        return depth[node]

    for n in ui["nodes"]:
        if n["type"] == "KSampler":
            n["widgets_values"][1] = "fixed"  # control_after_generate: keep the seed, results reproduce
    columns: dict[int, int] = {}
    for n in sorted(ui["nodes"], key=lambda n: n["id"]):
        col = d(n["id"])
        y = columns.get(col, 40)
        n["pos"] = [40 + 380 * col, y]
        height = n.get("size", [300, 120])[1] if isinstance(n.get("size"), list) else 120
        columns[col] = y + max(height, 80) + 60
    # open zoomed out on the whole graph (the frontend restores extra.ds)
    right = max(n["pos"][0] + 340 for n in ui["nodes"])
    bottom = max(columns.values())
    scale = round(min(1600 / (right + 40), 940 / (bottom + 40), 1.0), 3)
    ui.setdefault("extra", {})["ds"] = {"scale": scale, "offset": [20, 20]}
    return ui


def thumbnail(harness: str, port: int, ui_file: Path, jpg: Path) -> None:
    """A screenshot of the workflow in the frontend, saved as a JPEG (the template browser's thumbnail)."""
    png = jpg.with_suffix(".png")
    env = dict(os.environ, SHOT=str(png))
    subprocess.run(
        ["node", os.path.join(harness, "frontend.mjs"), "--port", str(port), "ui2api", str(ui_file),
         str(jpg.with_suffix(".api.json"))],
        check=True, stdout=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    from PIL import Image

    image = Image.open(png).convert("RGB")
    ds = json.loads(ui_file.read_text())["extra"]["ds"]
    nodes = json.loads(ui_file.read_text())["nodes"]
    right = max(n["pos"][0] + n["size"][0] for n in nodes) + 60
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes) + 60
    # the canvas starts below the menu bar and right of the side bar; keep the graph only
    box = (
        60,
        70,
        min(image.width, 70 + int(right * ds["scale"])),
        min(image.height, 80 + int(bottom * ds["scale"])),
    )
    image = image.crop(box)
    image.thumbnail((800, 500))
    image.save(jpg, quality=85)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--harness", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    for name, build in WORKFLOWS.items():
        api_file, ui_file = tmp / f"{name}_api.json", tmp / f"{name}.json"
        api_file.write_text(json.dumps(build()))
        subprocess.run(
            [
                "node",
                os.path.join(args.harness, "frontend.mjs"),
                "--port",
                str(args.port),
                "api2ui",
                str(api_file),
                str(ui_file),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        ui = layout(json.loads(ui_file.read_text()))
        text = json.dumps(ui, indent=1)
        (REPO / "workflows").mkdir(exist_ok=True)
        (REPO / "workflows" / f"{name}.json").write_text(text + "\n")
        thumbnail(args.harness, args.port, REPO / "workflows" / f"{name}.json", tmp / f"{name}.jpg")
        shutil.copy(tmp / f"{name}.jpg", REPO / "workflows" / f"{name}.jpg")
        print(name, len(ui["nodes"]), "nodes", file=sys.stderr)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
