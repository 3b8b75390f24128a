"""Cameras: presets, keyframes, CameraCtrl poses and camera files."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from amg_model.camera.cameractrl import (
    WORLDS,
    camera_from_cameractrl_rows,
    camera_to_cameractrl_rows,
    read_cameractrl_txt,
)
from amg_model.camera.easing import EASINGS
from amg_model.camera.framing import motion_target
from amg_model.camera.keyframes import camera_from_keyframes
from amg_model.camera.presets import PRESET_DIRECTIONS, PRESET_NAMES, camera_preset
from amg_model.camera.serialize import load_camera_json

from . import edges
from . import types as t
from .inputs import size_inputs, size_override_inputs

DIRECTIONS = ["default", *sorted({d for ds in PRESET_DIRECTIONS.values() for d in ds if d != "none"})]
CAMERA_FILE_SUFFIXES = (".txt", ".json")
EXAMPLE_KEYFRAMES = """{
  "fov_deg": 45,
  "keyframes": [
    {"frame": 0, "position": [0, 1.2, 3.5], "look_at": [0, 1, 0]},
    {"frame": 15, "position": [2.5, 1.5, 2.5], "look_at": [0, 1, 0], "easing": "ease_in_out"}
  ]
}"""


class AMGCameraTrajectory(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_CameraTrajectory",
            display_name="AMG Camera Trajectory",
            category="AMG/camera",
            description="A named camera move around a subject at the origin: static, orbit, dolly, truck, "
            "pedestal, pan, tilt, zoom, crane, arc, dolly_zoom.",
            inputs=[
                io.Combo.Input(
                    "preset", options=list(PRESET_NAMES), default="orbit", tooltip="The camera move."
                ),
                io.Int.Input("frames", default=16, min=1, max=4096, tooltip="Number of frames."),
                *size_inputs(),
                io.Float.Input(
                    "distance",
                    default=3.5,
                    min=0.3,
                    max=100.0,
                    step=0.05,
                    tooltip="Metres from the camera to the target at the start.",
                ),
                io.Float.Input(
                    "camera_height",
                    default=1.2,
                    min=-10.0,
                    max=50.0,
                    step=0.05,
                    tooltip="Camera height above the ground in metres at the start.",
                ),
                io.Float.Input(
                    "angle_deg",
                    default=0.0,
                    min=-360.0,
                    max=360.0,
                    step=1.0,
                    tooltip="Start azimuth around the target; 0 is in front of a subject facing +z.",
                ),
                io.Float.Input(
                    "fov_deg",
                    default=45.0,
                    min=1.0,
                    max=170.0,
                    step=0.5,
                    tooltip="Vertical field of view at the start.",
                ),
                io.Float.Input(
                    "amount",
                    default=0.0,
                    min=-3600.0,
                    max=3600.0,
                    step=0.05,
                    tooltip="Size of the move (degrees, metres or zoom factor); 0 uses the preset's.",
                ),
                io.Combo.Input(
                    "direction",
                    options=DIRECTIONS,
                    default="default",
                    tooltip="Direction of the move; default is the preset's first.",
                ),
                io.Combo.Input(
                    "easing", options=list(EASINGS), default="ease_in_out", tooltip="Speed profile."
                ),
                io.Float.Input(
                    "target_x", default=0.0, min=-100.0, max=100.0, step=0.05, tooltip="Aim point x (m)."
                ),
                io.Float.Input(
                    "target_y",
                    default=1.0,
                    min=-100.0,
                    max=100.0,
                    step=0.05,
                    tooltip="Aim point height (m); 1 is the chest of a standing person.",
                ),
                io.Float.Input(
                    "target_z", default=0.0, min=-100.0, max=100.0, step=0.05, tooltip="Aim point z (m)."
                ),
                io.Boolean.Input(
                    "follow_subject",
                    default=False,
                    tooltip="With a motion connected: aim at the people in every frame instead of at "
                    "one fixed point.",
                ),
                t.Motion.Input(
                    "motion",
                    optional=True,
                    tooltip="Aim at these people (the centre of their joints) instead of target_x/y/z.",
                ),
                t.BodyModel.Input(
                    "body_model", optional=True, tooltip="The body that will be rendered (default mannequin)."
                ),
            ],
            outputs=[t.Camera.Output(display_name="camera")],
        )

    @classmethod
    def execute(
        cls,
        preset="orbit",
        frames=16,
        width=256,
        height=256,
        distance=3.5,
        camera_height=1.2,
        angle_deg=0.0,
        fov_deg=45.0,
        amount=0.0,
        direction="default",
        easing="ease_in_out",
        target_x=0.0,
        target_y=1.0,
        target_z=0.0,
        follow_subject=False,
        motion=None,
        body_model=None,
    ) -> io.NodeOutput:
        target = (target_x, target_y, target_z)
        if motion is not None:
            target = motion_target(motion, body_model, follow=follow_subject)
            target = target if follow_subject else target[0]
        camera = camera_preset(
            preset,
            frames=frames,
            target=target,
            distance=distance,
            height=camera_height,
            angle_deg=angle_deg,
            fov_deg=fov_deg,
            width=width,
            height_px=height,
            amount=amount or None,
            direction=None if direction == "default" else direction,
            easing=easing,
        )
        return io.NodeOutput(camera)


class AMGCameraKeyframes(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_CameraKeyframes",
            display_name="AMG Camera Keyframes",
            category="AMG/camera",
            description="A camera interpolated through keyframes given as JSON (position, look_at or "
            "rotation_deg, fov_deg, easing per keyframe).",
            inputs=[
                io.String.Input(
                    "keyframes",
                    multiline=True,
                    default=EXAMPLE_KEYFRAMES,
                    tooltip="Keyframes JSON: {'keyframes': [{'frame', 'position', 'look_at'}, ...]}.",
                ),
                io.Int.Input("frames", default=16, min=1, max=4096, tooltip="Number of frames."),
                *size_inputs(),
            ],
            outputs=[t.Camera.Output(display_name="camera")],
        )

    @classmethod
    def execute(cls, keyframes=EXAMPLE_KEYFRAMES, frames=16, width=256, height=256) -> io.NodeOutput:
        return io.NodeOutput(camera_from_keyframes(keyframes, frames=frames, width=width, height=height))


class AMGCameraFromPoses(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_CameraFromPoses",
            display_name="AMG Camera From Poses",
            category="AMG/camera",
            description="A camera from CameraCtrl poses (CAMERACTRL_POSES, AnimateDiff-Evolved and others).",
            inputs=[
                t.CameraCtrlPoses.Input("poses", tooltip="One RealEstate10K row per frame."),
                *size_inputs(),
                io.Float.Input(
                    "scale",
                    default=1.0,
                    min=0.001,
                    max=1000.0,
                    step=0.01,
                    tooltip="Metres per pose unit (RealEstate10K poses have no scale).",
                ),
                io.Combo.Input(
                    "world",
                    options=list(WORLDS),
                    default="y_down",
                    tooltip="y_down for CameraCtrl/RealEstate10K poses, y_up for this pack's.",
                ),
            ],
            outputs=[t.Camera.Output(display_name="camera")],
        )

    @classmethod
    def execute(cls, poses, width=256, height=256, scale=1.0, world="y_down") -> io.NodeOutput:
        return io.NodeOutput(
            camera_from_cameractrl_rows(poses, width=width, height=height, scale=scale, world=world)
        )


class AMGCameraToPoses(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_CameraToPoses",
            display_name="AMG Camera To Poses",
            category="AMG/camera",
            description="CameraCtrl poses (CAMERACTRL_POSES) of a camera, for CameraCtrl video models.",
            inputs=[
                t.Camera.Input("camera", tooltip="The camera."),
                io.Float.Input(
                    "scale", default=1.0, min=0.001, max=1000.0, step=0.01, tooltip="Metres per pose unit."
                ),
                io.Combo.Input(
                    "world",
                    options=list(WORLDS),
                    default="y_down",
                    tooltip="y_down is what CameraCtrl expects.",
                ),
                io.Float.Input(
                    "fps", default=8.0, min=0.5, max=240.0, step=0.5, tooltip="Frame rate of the timestamps."
                ),
            ],
            outputs=[t.CameraCtrlPoses.Output(display_name="poses")],
        )

    @classmethod
    def execute(cls, camera, scale=1.0, world="y_down", fps=8.0) -> io.NodeOutput:
        return io.NodeOutput(camera_to_cameractrl_rows(camera, scale=scale, world=world, fps=fps))


class AMGLoadCamera(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_LoadCamera",
            display_name="AMG Load Camera",
            category="AMG/camera",
            description="Loads a camera file from the input folder: a CameraCtrl/RealEstate10K pose .txt or "
            "this pack's camera .json.",
            inputs=[
                io.Combo.Input(
                    "camera_file",
                    options=edges.input_files(CAMERA_FILE_SUFFIXES),
                    tooltip="Pose .txt or camera .json in the input folder.",
                ),
                *size_override_inputs(
                    "Image width for .txt poses; 0 uses the poses' size.",
                    "Image height for .txt poses; 0 uses the poses' size.",
                ),
                io.Float.Input(
                    "scale",
                    default=1.0,
                    min=0.001,
                    max=1000.0,
                    step=0.01,
                    tooltip=".txt poses: metres per pose unit.",
                ),
            ],
            outputs=[t.Camera.Output(display_name="camera")],
        )

    @classmethod
    def validate_inputs(cls, camera_file, width=0, height=0, scale=1.0):
        if not folder_paths.exists_annotated_filepath(camera_file):
            return f"Camera file {camera_file} is not in the input folder."
        return True

    @classmethod
    def fingerprint_inputs(cls, camera_file, width=0, height=0, scale=1.0):
        return edges.file_fingerprint(camera_file)

    @classmethod
    def execute(cls, camera_file, width=0, height=0, scale=1.0) -> io.NodeOutput:
        path = edges.input_file_path(camera_file)
        if os.path.splitext(path)[1].lower() == ".json":
            return io.NodeOutput(load_camera_json(path))
        return io.NodeOutput(
            read_cameractrl_txt(path, width=width or None, height=height or None, scale=scale)
        )
