"""Body models and motions: loading, procedural motions, editing, saving, fitting to keypoints."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from amg_model.smpl import edit
from amg_model.smpl.body import load_body_model
from amg_model.smpl.fit import fit_keypoints
from amg_model.smpl.formats import load_motion, save_motion
from amg_model.smpl.formats.detect import READERS, SUFFIXES
from amg_model.smpl.keypoints import parse_pose_keypoints
from amg_model.smpl.motion import BODY_JOINTS, GENDERS
from amg_model.smpl.procedural import KINDS, procedural_motion

from . import edges
from . import types as t
from .inputs import size_override_inputs

MANNEQUIN = "mannequin (built-in)"
EDIT_OPERATIONS = ("trim", "resample", "loop", "rotate", "translate", "mirror", "select_persons")


class AMGLoadBodyModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_LoadBodyModel",
            display_name="AMG Load Body Model",
            category="AMG/avatar",
            description="The body that motions pose: the built-in mannequin (no download) or an "
            "SMPL / SMPL-H / SMPL-X file from models/smpl.",
            inputs=[
                io.Combo.Input(
                    "body_model",
                    options=[MANNEQUIN, *edges.model_files(edges.SMPL_FOLDER)],
                    default=MANNEQUIN,
                    tooltip="The mannequin, or a body model file (.pkl/.npz) in models/smpl.",
                ),
                io.Combo.Input(
                    "gender",
                    options=list(GENDERS),
                    default="neutral",
                    tooltip="Body gender; a file named e.g. SMPLX_FEMALE decides by itself.",
                ),
                io.Int.Input("num_betas", default=10, min=1, max=300, tooltip="Shape coefficients to use."),
            ],
            outputs=[t.BodyModel.Output(display_name="body_model")],
        )

    @classmethod
    def validate_inputs(cls, body_model=MANNEQUIN, gender="neutral", num_betas=10):
        if body_model != MANNEQUIN and body_model not in edges.model_files(edges.SMPL_FOLDER):
            return f"{body_model} is not in models/smpl; put the body model file there and refresh."
        return True

    @classmethod
    def execute(cls, body_model=MANNEQUIN, gender="neutral", num_betas=10) -> io.NodeOutput:
        source = (
            "mannequin" if body_model == MANNEQUIN else edges.model_file_path(edges.SMPL_FOLDER, body_model)
        )
        return io.NodeOutput(load_body_model(source, gender=gender, num_betas=num_betas))


class AMGLoadMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_LoadMotion",
            display_name="AMG Load Motion",
            category="AMG/motion",
            description="Loads an SMPL-family motion file from ComfyUI's input folder (AMASS, SMPL "
            "parameters, 4D-Humans/PHALP, GVHMR, MotionDiff or this pack's .npz).",
            inputs=[
                io.Combo.Input(
                    "motion_file",
                    options=edges.input_files(SUFFIXES),
                    tooltip="Motion file in the input folder (.npz, .pt, .pth, .pkl, .json).",
                ),
                io.Combo.Input(
                    "format",
                    options=["auto", *sorted(READERS)],
                    default="auto",
                    tooltip="File format; auto detects it from the content.",
                ),
                io.Float.Input(
                    "fps",
                    default=0.0,
                    min=0.0,
                    max=240.0,
                    step=0.5,
                    tooltip="Frame rate for files that store none; 0 uses the file's or 30.",
                ),
            ],
            outputs=[t.Motion.Output(display_name="motion")],
        )

    @classmethod
    def validate_inputs(cls, motion_file, format="auto", fps=0.0):  # noqa: A002
        if not folder_paths.exists_annotated_filepath(motion_file):
            return f"Motion file {motion_file} is not in the input folder."
        return True

    @classmethod
    def fingerprint_inputs(cls, motion_file, format="auto", fps=0.0):  # noqa: A002
        return edges.file_fingerprint(motion_file)

    @classmethod
    def execute(cls, motion_file, format="auto", fps=0.0) -> io.NodeOutput:  # noqa: A002
        path = edges.input_file_path(motion_file)
        return io.NodeOutput(load_motion(path, format=format, fps=fps or None))


class AMGProceduralMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_ProceduralMotion",
            display_name="AMG Procedural Motion",
            category="AMG/motion",
            description="A one-person motion from joint-angle curves: idle, walk, run, wave, jump, turn.",
            inputs=[
                io.Combo.Input("kind", options=list(KINDS), default="walk", tooltip="The kind of motion."),
                io.Int.Input("frames", default=16, min=1, max=4096, tooltip="Number of frames."),
                io.Float.Input(
                    "fps",
                    default=8.0,
                    min=1.0,
                    max=240.0,
                    step=0.5,
                    tooltip="Frame rate (AMG samples 8 fps).",
                ),
                io.Float.Input(
                    "speed", default=1.0, min=0.1, max=4.0, step=0.05, tooltip="Tempo multiplier."
                ),
                io.Combo.Input(
                    "body_type",
                    options=list(BODY_JOINTS),
                    default="mannequin",
                    tooltip="Skeleton of the body model that will pose the motion.",
                ),
                io.Float.Input(
                    "angle_deg",
                    default=180.0,
                    min=-720.0,
                    max=720.0,
                    step=1.0,
                    tooltip="Total turn of the turn motion (positive turns left).",
                ),
                io.Combo.Input("hand", options=["right", "left"], default="right", tooltip="Waving hand."),
            ],
            outputs=[t.Motion.Output(display_name="motion")],
        )

    @classmethod
    def execute(
        cls, kind="walk", frames=16, fps=8.0, speed=1.0, body_type="mannequin", angle_deg=180.0, hand="right"
    ) -> io.NodeOutput:
        return io.NodeOutput(
            procedural_motion(
                kind, frames=frames, fps=fps, speed=speed, body_type=body_type, angle_deg=angle_deg, hand=hand
            )
        )


class AMGEditMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_EditMotion",
            display_name="AMG Edit Motion",
            category="AMG/motion",
            description="One edit of a motion: trim, resample, loop, rotate, translate, mirror or select "
            "persons. Chain nodes for several edits.",
            inputs=[
                t.Motion.Input("motion", tooltip="The motion to edit (it is not modified)."),
                io.Combo.Input(
                    "operation", options=list(EDIT_OPERATIONS), default="trim", tooltip="The edit."
                ),
                io.Int.Input(
                    "start", default=0, min=-100000, max=100000, tooltip="trim: first frame (0-based)."
                ),
                io.Int.Input(
                    "end",
                    default=0,
                    min=-100000,
                    max=100000,
                    tooltip="trim: frame after the last; 0 keeps up to the end.",
                ),
                io.Int.Input("frames", default=48, min=1, max=100000, tooltip="loop: frames of the result."),
                io.Float.Input(
                    "fps", default=8.0, min=0.5, max=240.0, step=0.5, tooltip="resample: new frame rate."
                ),
                io.Float.Input(
                    "yaw_deg",
                    default=90.0,
                    min=-360.0,
                    max=360.0,
                    step=1.0,
                    tooltip="rotate: turn about the vertical axis (positive turns left).",
                ),
                io.Float.Input(
                    "x", default=0.0, min=-100.0, max=100.0, step=0.05, tooltip="translate: metres."
                ),
                io.Float.Input(
                    "y", default=0.0, min=-100.0, max=100.0, step=0.05, tooltip="translate: metres (up)."
                ),
                io.Float.Input(
                    "z", default=0.0, min=-100.0, max=100.0, step=0.05, tooltip="translate: metres."
                ),
                io.String.Input(
                    "persons",
                    default="",
                    tooltip="Persons to edit (or keep, for select_persons): indices or names, "
                    "comma-separated; empty means all.",
                ),
            ],
            outputs=[t.Motion.Output(display_name="motion")],
        )

    @classmethod
    def execute(
        cls,
        motion,
        operation="trim",
        start=0,
        end=0,
        frames=48,
        fps=8.0,
        yaw_deg=90.0,
        x=0.0,
        y=0.0,
        z=0.0,
        persons="",
    ) -> io.NodeOutput:
        who = edges.person_list(persons)
        calls = {
            "trim": lambda: edit.trim(motion, start, end or None),
            "resample": lambda: edit.resample(motion, fps),
            "loop": lambda: edit.loop(motion, num_frames=frames),
            "rotate": lambda: edit.rotate_motion(motion, yaw_deg, persons=who),
            "translate": lambda: edit.translate_motion(motion, (x, y, z), persons=who),
            "mirror": lambda: edit.mirror_motion(motion, persons=who),
            "select_persons": lambda: edit.select_persons(motion, who or list(range(len(motion.persons)))),
        }
        if operation not in calls:
            raise edges.errors.MotionError(
                f"Edit operation {operation!r} is unknown; use one of {EDIT_OPERATIONS}."
            )
        return io.NodeOutput(calls[operation]())


class AMGCombineMotions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_CombineMotions",
            display_name="AMG Combine Motions",
            category="AMG/motion",
            description="Puts the persons of several motions into one scene (all rendered together).",
            inputs=[
                t.Motion.Input("motion_1", tooltip="First motion."),
                t.Motion.Input("motion_2", optional=True, tooltip="Second motion."),
                t.Motion.Input("motion_3", optional=True, tooltip="Third motion."),
                t.Motion.Input("motion_4", optional=True, tooltip="Fourth motion."),
                io.Combo.Input(
                    "pad",
                    options=["hold", "loop"],
                    default="hold",
                    tooltip="Shorter motions: hold their last frame, or loop.",
                ),
            ],
            outputs=[t.Motion.Output(display_name="motion")],
        )

    @classmethod
    def execute(cls, motion_1, motion_2=None, motion_3=None, motion_4=None, pad="hold") -> io.NodeOutput:
        return io.NodeOutput(edit.combine([motion_1, motion_2, motion_3, motion_4], pad=pad))


class AMGSaveMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_SaveMotion",
            display_name="AMG Save Motion",
            category="AMG/motion",
            description="Saves a motion as this pack's .npz (axis-angle SMPL parameters, y-up) in output/.",
            inputs=[
                t.Motion.Input("motion", tooltip="The motion to save."),
                io.String.Input(
                    "filename_prefix", default="amg/motion", tooltip="Prefix under the output folder."
                ),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, motion, filename_prefix="amg/motion") -> io.NodeOutput:
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory()
        )
        file = f"{name}_{counter:05}_.npz"
        save_motion(motion, os.path.join(folder, file))
        return io.NodeOutput(ui={"motions": [{"filename": file, "subfolder": subfolder, "type": "output"}]})


class AMGLoadPoseKeypoints(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_LoadPoseKeypoints",
            display_name="AMG Load Pose Keypoints",
            category="AMG/motion",
            description="Loads OpenPose/DWPose keypoints (a JSON list of frames, as saved from "
            "comfyui_controlnet_aux) as POSE_KEYPOINT.",
            inputs=[
                io.Combo.Input(
                    "keypoints_file",
                    options=edges.input_files((".json",)),
                    tooltip="JSON file in the input folder: a list of OpenPose frames or one frame.",
                ),
            ],
            outputs=[t.PoseKeypoint.Output(display_name="pose_keypoint")],
        )

    @classmethod
    def validate_inputs(cls, keypoints_file):
        if not folder_paths.exists_annotated_filepath(keypoints_file):
            return f"Keypoints file {keypoints_file} is not in the input folder."
        return True

    @classmethod
    def fingerprint_inputs(cls, keypoints_file):
        return edges.file_fingerprint(keypoints_file)

    @classmethod
    def execute(cls, keypoints_file) -> io.NodeOutput:
        frames = edges.read_json(edges.input_file_path(keypoints_file))
        frames = frames if isinstance(frames, list) else [frames]
        parse_pose_keypoints(frames)  # raises MotionError naming what is wrong
        return io.NodeOutput(frames)


class AMGFitMotionToKeypoints(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_FitMotionToKeypoints",
            display_name="AMG Fit Motion To Keypoints",
            category="AMG/motion",
            description="Fits the 3D motion of every person and the static camera that films them to 2D "
            "body keypoints of a video.",
            inputs=[
                t.BodyModel.Input("body_model", tooltip="Body model to fit."),
                t.PoseKeypoint.Input("pose_keypoint", tooltip="Per-frame keypoints (DWPose/OpenPose)."),
                *size_override_inputs(
                    "Width of the keypoints' video in pixels; 0 uses the keypoints' canvas.",
                    "Height in pixels; 0 uses the keypoints' canvas.",
                    names=("image_width", "image_height"),
                    max_px=8192,
                ),
                io.Float.Input(
                    "fov_deg",
                    default=50.0,
                    min=5.0,
                    max=150.0,
                    step=0.5,
                    tooltip="Vertical field of view of the video's camera.",
                ),
                io.Int.Input("iterations", default=300, min=10, max=5000, tooltip="Optimisation steps."),
                io.Float.Input(
                    "fps", default=8.0, min=0.5, max=240.0, step=0.5, tooltip="Frame rate of the motion."
                ),
            ],
            outputs=[t.Motion.Output(display_name="motion"), t.Camera.Output(display_name="camera")],
        )

    @classmethod
    def execute(
        cls, body_model, pose_keypoint, image_width=0, image_height=0, fov_deg=50.0, iterations=300, fps=8.0
    ) -> io.NodeOutput:
        size = (image_width, image_height) if image_width and image_height else None
        with edges.autograd():
            motion, camera = fit_keypoints(
                pose_keypoint,
                edges.autograd_copy(body_model),
                image_size=size,
                fov_deg=fov_deg,
                iterations=iterations,
                fps=fps,
                device=edges.compute_device(),
                progress=edges.Progress(iterations),
            )
        return io.NodeOutput(motion, camera)
