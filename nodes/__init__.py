"""ComfyUI nodes of the AMG pack: thin V3 glue over the ``amg_model`` library."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import edges
from .camera import (
    AMGCameraFromPoses,
    AMGCameraKeyframes,
    AMGCameraToPoses,
    AMGCameraTrajectory,
    AMGLoadCamera,
)
from .conditioning import AMGAvatarConditioning
from .model import AMGLoadModel
from .render import AMGPreviewScene, AMGRenderAvatars
from .smpl import (
    AMGCombineMotions,
    AMGEditMotion,
    AMGFitMotionToKeypoints,
    AMGLoadBodyModel,
    AMGLoadMotion,
    AMGLoadPoseKeypoints,
    AMGProceduralMotion,
    AMGSaveMotion,
)

NODES: list[type[io.ComfyNode]] = [
    AMGLoadModel,
    AMGAvatarConditioning,
    AMGLoadBodyModel,
    AMGLoadMotion,
    AMGProceduralMotion,
    AMGEditMotion,
    AMGCombineMotions,
    AMGSaveMotion,
    AMGLoadPoseKeypoints,
    AMGFitMotionToKeypoints,
    AMGCameraTrajectory,
    AMGCameraKeyframes,
    AMGCameraFromPoses,
    AMGCameraToPoses,
    AMGLoadCamera,
    AMGRenderAvatars,
    AMGPreviewScene,
]


class AMGExtension(ComfyExtension):
    """Registers the model folders (models/amg, models/smpl) and lists the nodes."""

    def __init__(self):
        edges.register_model_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
