"""The motion, camera and rendering nodes in one small graph, checked through the files they write."""

from __future__ import annotations

import pytest
from graphs import dump, output_files, png_size

KEYFRAMES = (
    '{"keyframes": [{"frame": 0, "position": [0, 1.2, 3.5], "look_at": [0, 1, 0]}, '
    '{"frame": 7, "position": [2, 1.5, 3], "look_at": [0, 1, 0], "fov_deg": 40}]}'
)
EDITS = {  # operation -> extra inputs; each edit of an 8-frame walk
    "trim": {"start": 2, "end": 6},
    "resample": {"fps": 4.0},
    "loop": {"frames": 12},
    "rotate": {"yaw_deg": 90.0},
    "translate": {"x": 0.5, "z": -0.5},
    "mirror": {},
    "select_persons": {"persons": "0"},
}


def graph() -> dict:
    g = {
        "1": {"class_type": "AMG_LoadBodyModel", "inputs": {}},
        "2": {"class_type": "AMG_ProceduralMotion", "inputs": {"kind": "walk", "frames": 8}},
        "3": {"class_type": "AMG_ProceduralMotion", "inputs": {"kind": "jump", "frames": 6}},
        "4": {
            "class_type": "AMG_CombineMotions",
            "inputs": {"motion_1": ["2", 0], "motion_2": ["3", 0], "pad": "loop"},
        },
        "5": {"class_type": "AMG_LoadCamera", "inputs": {"camera_file": "camera.json"}},
        "6": {"class_type": "AMG_CameraToPoses", "inputs": {"camera": ["5", 0]}},
        "7": {"class_type": "AMG_CameraFromPoses", "inputs": {"poses": ["6", 0], "width": 64, "height": 64}},
        "8": {
            "class_type": "AMG_CameraKeyframes",
            "inputs": {"keyframes": KEYFRAMES, "frames": 8, "width": 64, "height": 64},
        },
        "9": {
            "class_type": "AMG_RenderAvatars",
            "inputs": {"body_model": ["1", 0], "motion": ["4", 0], "camera": ["7", 0], "supersample": 1},
        },
        "10": {
            "class_type": "AMG_RenderAvatars",
            "inputs": {
                "body_model": ["1", 0],
                "motion": ["2", 0],
                "camera": ["8", 0],
                "width": 32,
                "height": 48,
                "supersample": 1,
                "appearance": "sport",
            },
        },
        "11": {
            "class_type": "AMG_PreviewScene",
            "inputs": {"motion": ["4", 0], "camera": ["8", 0], "size": 128},
        },
        "12": {
            "class_type": "SaveImage",
            "inputs": {"images": ["9", 0], "filename_prefix": "nodes/combined"},
        },
        "13": {
            "class_type": "SaveImage",
            "inputs": {"images": ["10", 0], "filename_prefix": "nodes/keyframes"},
        },
        "14": {
            "class_type": "SaveImage",
            "inputs": {"images": ["11", 0], "filename_prefix": "nodes/preview"},
        },
        "15": {"class_type": "SaveImage", "inputs": {"images": ["10", 2], "filename_prefix": "nodes/depth"}},
        "16": {
            "class_type": "SaveImage",
            "inputs": {"images": ["10", 3], "filename_prefix": "nodes/normals"},
        },
        "17": {"class_type": "MaskToImage", "inputs": {"mask": ["10", 1]}},
        "18": {"class_type": "SaveImage", "inputs": {"images": ["17", 0], "filename_prefix": "nodes/mask"}},
        "19": {
            "class_type": "AMG_SaveMotion",
            "inputs": {"motion": ["4", 0], "filename_prefix": "nodes/combined"},
        },
    }
    g["20"] = {  # a static camera that follows the walker
        "class_type": "AMG_CameraTrajectory",
        "inputs": {
            "preset": "static", "frames": 8, "width": 48, "height": 48, "distance": 3.0,
            "follow_subject": True, "motion": ["2", 0], "body_model": ["1", 0],
        },
    }  # fmt: skip
    g["21"] = {
        "class_type": "AMG_RenderAvatars",
        "inputs": {"body_model": ["1", 0], "motion": ["2", 0], "camera": ["20", 0], "supersample": 1},
    }
    g["22"] = {"class_type": "MaskToImage", "inputs": {"mask": ["21", 1]}}
    g["23"] = {"class_type": "SaveImage", "inputs": {"images": ["22", 0], "filename_prefix": "nodes/follow"}}
    for i, (op, extra) in enumerate(EDITS.items()):
        g[f"{30 + i}"] = {
            "class_type": "AMG_EditMotion",
            "inputs": {"motion": ["2", 0], "operation": op, **extra},
        }
        g[f"{40 + i}"] = {
            "class_type": "AMG_SaveMotion",
            "inputs": {"motion": [f"{30 + i}", 0], "filename_prefix": f"nodes/{op}"},
        }
    return g


@pytest.fixture(scope="module")
def ran(comfy):
    result = comfy.run(graph())
    assert result["ok"], dump(result)
    return result


def test_renders_have_the_requested_sizes(comfy, ran):
    assert [png_size(f) for f in output_files(comfy, ran, "12")] == [(64, 64)] * 8  # camera file size
    for node in ("13", "15", "16", "18"):  # explicit size overrides the keyframed camera's
        assert [png_size(f) for f in output_files(comfy, ran, node)] == [(32, 48)] * 8
    assert [png_size(f) for f in output_files(comfy, ran, "14")] == [(128, 64)]


def test_camera_follows_the_subject(comfy, ran):
    import cv2
    import numpy as np

    masks = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in output_files(comfy, ran, "23")]
    assert len(masks) == 8
    for m in masks:  # the walker stays near the middle of every frame
        ys, xs = np.nonzero(m > 127)
        assert len(xs) > 20
        assert abs(xs.mean() - 24) < 6 and abs(ys.mean() - 24) < 10


def test_saved_motions_reload_with_the_expected_frames(comfy, ran):
    from amg_model.smpl.formats import load_motion

    combined = load_motion(output_files(comfy, ran, "19", "motions")[0])
    assert len(combined.persons) == 2 and combined.num_frames == 8
    frames = {
        op: load_motion(output_files(comfy, ran, f"{40 + i}", "motions")[0]).num_frames
        for i, op in enumerate(EDITS)
    }
    assert frames == {
        "trim": 4,
        "resample": 5,
        "loop": 12,
        "rotate": 8,
        "translate": 8,
        "mirror": 8,
        "select_persons": 8,
    }
