"""AMG (Avatar Motion Guided video generation) as a plain PyTorch library.

Never imports ComfyUI. Public names are imported lazily so that ``import amg_model`` stays cheap.
"""

import importlib

# public name -> module that defines it
_EXPORTS = {
    # errors
    "AMGError": "amg_model.errors",
    "CheckpointError": "amg_model.errors",
    "BodyModelError": "amg_model.errors",
    "MotionError": "amg_model.errors",
    "CameraError": "amg_model.errors",
    "RenderError": "amg_model.errors",
    "SamplingError": "amg_model.errors",
    # model
    "load_unet": "amg_model.model.checkpoint",
    "load_text_encoder": "amg_model.model.text",
    "load_vae": "amg_model.model.vae",
    # sampling
    "sample_video": "amg_model.sampling.sample",
    "ddim_timesteps": "amg_model.sampling.schedule",
    # smpl
    "Person": "amg_model.smpl.motion",
    "Motion": "amg_model.smpl.motion",
    "load_body_model": "amg_model.smpl.body",
    "load_motion": "amg_model.smpl.formats",
    "save_motion": "amg_model.smpl.formats",
    "procedural_motion": "amg_model.smpl.procedural",
    "fit_keypoints": "amg_model.smpl.fit",
    "fit_joints3d": "amg_model.smpl.fit",
    # camera
    "Camera": "amg_model.camera.camera",
    "camera_preset": "amg_model.camera.presets",
    "camera_from_keyframes": "amg_model.camera.keyframes",
    # render
    "render_meshes": "amg_model.render.raster",
    "render_avatars": "amg_model.render.avatars",
    "render_scene_preview": "amg_model.render.preview",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'amg_model' has no attribute {name!r}")
