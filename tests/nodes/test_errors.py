"""Bad inputs end as clean ComfyUI errors naming the problem, and the server keeps serving."""

from __future__ import annotations

import pytest
from graphs import empty_video, sample, save_images, text_and_vae

BODY = {"1": {"class_type": "AMG_LoadBodyModel", "inputs": {"body_model": "mannequin (built-in)"}}}


def render(motion_frames: int, camera_frames: int, width: int = 64) -> dict:
    return {
        **BODY,
        "2": {"class_type": "AMG_ProceduralMotion", "inputs": {"kind": "idle", "frames": motion_frames}},
        "3": {"class_type": "AMG_CameraTrajectory",
              "inputs": {"preset": "static", "frames": camera_frames, "width": width, "height": 64}},
        "4": {"class_type": "AMG_RenderAvatars", "inputs": {"body_model": ["1", 0], "motion": ["2", 0],
                                                            "camera": ["3", 0]}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }  # fmt: skip


def runtime_error(comfy, prompt: dict) -> dict:
    result = comfy.run(prompt)
    assert not result["ok"]
    error = result["error"]
    if isinstance(error, list):  # read from /history (no websocket client): [["execution_error", {...}]]
        error = error[0][1]
    assert isinstance(error, dict) and error.get("exception_message"), error
    return error


def still_serving(comfy) -> None:
    """The server answers and still samples after the error."""
    assert comfy.client.get("/system_stats")["system"]
    result = comfy.run(render(4, 4))
    assert result["ok"], result["error"]


def generation(width: int = 64, unet: str = "tiny_amg.pth") -> dict:
    return {**text_and_vae(), **empty_video(4, width=width), **sample(["120", 0], unet=unet),
            **save_images(["113", 0], "x")}  # fmt: skip


def no_avatar_conditioning() -> dict:
    prompt = generation()
    prompt["112"]["inputs"].update(positive=["101", 0], negative=["102", 0], latent_image=["121", 0])
    prompt["121"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 4}}
    return prompt


def corrupt_motion() -> dict:
    return {
        "2": {"class_type": "AMG_LoadMotion", "inputs": {"motion_file": "corrupt_motion.npz"}},
        "3": {"class_type": "AMG_SaveMotion", "inputs": {"motion": ["2", 0]}},
    }


def corrupt_keypoints() -> dict:
    fit = {"body_model": ["1", 0], "pose_keypoint": ["2", 0]}
    return {
        **BODY,
        "2": {"class_type": "AMG_LoadPoseKeypoints", "inputs": {"keypoints_file": "corrupt.json"}},
        "3": {"class_type": "AMG_FitMotionToKeypoints", "inputs": fit},
        "4": {"class_type": "AMG_SaveMotion", "inputs": {"motion": ["3", 0]}},
    }


CASES = {
    "motion and camera lengths differ": (
        lambda: render(12, 8),
        "AMG_RenderAvatars",
        "has 12 frames but the camera has 8",
    ),
    "size not a multiple of 8": (lambda: generation(width=60), "AMG_AvatarConditioning", "multiples of 8"),
    "corrupt model file": (lambda: generation(unet="corrupt_amg.safetensors"), "AMG_LoadModel", "corrupt"),
    "corrupt motion file": (corrupt_motion, "AMG_LoadMotion", "corrupt_motion.npz"),
    "corrupt keypoints file": (corrupt_keypoints, "AMG_LoadPoseKeypoints", "corrupt.json"),
    "sampling without avatar conditioning": (no_avatar_conditioning, "KSampler", "AMG Avatar Conditioning"),
}


@pytest.fixture(scope="module")
def bad_inputs(comfy):
    inputs = comfy.run_dir / "input"
    (inputs / "corrupt_motion.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (inputs / "corrupt.json").write_text('[{"people": [{"pose_keypoints_2d": [1, 2')
    return comfy


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_clean_execution_error(bad_inputs, case):
    build, node_type, message = CASES[case]
    error = runtime_error(bad_inputs, build())
    assert error["node_type"] == node_type
    assert message in error["exception_message"]
    assert error["exception_type"].endswith("Error")
    still_serving(bad_inputs)


def test_missing_model_is_refused_before_running(comfy):
    prompt = {
        **text_and_vae(),
        **empty_video(4),
        **sample(["120", 0], unet="missing.pth"),
        **save_images(["113", 0], "x"),
    }
    with pytest.raises(RuntimeError, match="missing.pth"):
        comfy.run(prompt)
    still_serving(comfy)


def test_cancel_stops_a_long_fit(comfy):
    """Cancel (POST /interrupt) reaches the library's progress callback and ends the node quickly."""
    import time
    import uuid

    prompt = comfy.with_defaults(corrupt_keypoints())
    prompt["2"]["inputs"]["keypoints_file"] = "dance_keypoints.json"
    prompt["3"]["inputs"]["iterations"] = 5000
    prompt_id = comfy.client.queue(prompt, uuid.uuid4().hex)["prompt_id"]
    time.sleep(3.0)
    comfy.client.post("/interrupt", {})
    deadline = time.time() + 60
    status = {}
    while time.time() < deadline:
        status = (comfy.client.history(prompt_id) or {}).get("status", {})
        if status.get("completed") is not None and status.get("status_str"):
            break
        time.sleep(0.2)
    assert status.get("status_str") == "error", status
    interrupted = [m[1] for m in status.get("messages", []) if m[0] == "execution_interrupted"]
    assert interrupted and interrupted[0]["node_type"] == "AMG_FitMotionToKeypoints", status
    still_serving(comfy)
