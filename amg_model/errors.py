"""Errors raised by the AMG library.

Every error is one sentence a user can act on: which file or input, what is wrong, what to do.
They derive from ``ValueError`` so that callers (and ComfyUI) treat them as bad input, not bugs.
"""


class AMGError(ValueError):
    """Base class of every error the library raises on bad input."""


class CheckpointError(AMGError):
    """A model file (UNet, VAE, text encoder) cannot be used."""


class BodyModelError(AMGError):
    """A body model file (SMPL, SMPL-H, SMPL-X) cannot be used."""


class MotionError(AMGError):
    """A motion, a motion file or keypoints cannot be used."""


class CameraError(AMGError):
    """A camera, a trajectory description or a camera file cannot be used."""


class RenderError(AMGError):
    """A render request cannot be carried out."""


class SamplingError(AMGError):
    """A sampling request (steps, guidance, latents, windows) cannot be carried out."""
