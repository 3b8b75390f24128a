"""The custom ComfyUI types of this pack, declared once (public API: never rename them).

Each carries a library object, never a loose dict:
    AMG_BODY_MODEL   amg_model.smpl.body.BodyModel
    AMG_MOTION       amg_model.smpl.motion.Motion
    AMG_CAMERA       amg_model.camera.camera.Camera
Types of the wider ecosystem, kept compatible with their producers:
    POSE_KEYPOINT    list of OpenPose-style frame dicts (comfyui_controlnet_aux)
    CAMERACTRL_POSES list of RealEstate10K rows (AnimateDiff-Evolved CameraCtrl)
"""

from comfy_api.latest import io

BodyModel = io.Custom("AMG_BODY_MODEL")
Motion = io.Custom("AMG_MOTION")
Camera = io.Custom("AMG_CAMERA")
PoseKeypoint = io.Custom("POSE_KEYPOINT")
CameraCtrlPoses = io.Custom("CAMERACTRL_POSES")
