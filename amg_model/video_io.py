"""Writing videos and images: mp4 files, PNG strips of frames, PNG images, latent previews."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from amg_model.errors import AMGError

logger = logging.getLogger(__name__)


class VideoWriteError(AMGError):
    """A video or image file cannot be written."""


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """``[..., 3]`` floats in 0..1 -> uint8 RGB numpy of the same shape."""
    return (frames.detach().float().cpu().clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def write_mp4(path: str | Path, frames: torch.Tensor | np.ndarray, fps: float) -> Path:
    """Write ``[F, H, W, 3]`` RGB frames (floats in 0..1 or uint8) as an mp4 (MPEG-4 part 2, ``mp4v``).

    Returns:
        The path written.
    """
    import cv2

    path = Path(path)
    video = frames if isinstance(frames, np.ndarray) else frames_to_uint8(frames)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise VideoWriteError(f"{path.name}: frames have shape {video.shape}; give [F, H, W, 3] RGB.")
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = video.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise VideoWriteError(f"{path}: OpenCV cannot write mp4v video; install opencv-python with FFmpeg.")
    try:
        for frame in video:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        writer.release()
    return path


def write_png(path: str | Path, image: torch.Tensor | np.ndarray) -> Path:
    """Write an ``[H, W, 3]`` RGB image (floats in 0..1 or uint8) as a PNG; returns the path."""
    import cv2

    path = Path(path)
    img = image if isinstance(image, np.ndarray) else frames_to_uint8(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(img[:, :, ::-1])):
        raise VideoWriteError(f"{path}: OpenCV could not write the PNG; check that the folder is writable.")
    return path


def frame_strip(panels: list[torch.Tensor]) -> np.ndarray:
    """One uint8 image of every frame: a row per panel, frames left to right.

    Args:
        panels: each ``[F, H, W, 3]`` in 0..1, same ``F``, ``H`` and ``W``.

    Returns:
        ``[P * H, F * W, 3]`` uint8 RGB.
    """
    arrays = [frames_to_uint8(p) for p in panels]
    return np.concatenate([np.concatenate(list(a), axis=1) for a in arrays], axis=0)


def write_outputs(out_dir: Path, name: str, panels: list[torch.Tensor], fps: int = 8) -> tuple[Path, Path]:
    """Write panels side by side as ``<name>.mp4`` and a ``<name>_strip.png`` (one row per panel).

    Args:
        panels: each ``[F, H, W, 3]`` in 0..1, same ``F`` and ``H`` (e.g. avatar, generated).
        fps: frame rate of the mp4.

    Returns:
        ``(mp4 path, png path)``.
    """
    out_dir = Path(out_dir)
    video = np.concatenate([frames_to_uint8(p) for p in panels], axis=2)  # [F, H, sum W, 3]
    video_path = write_mp4(out_dir / f"{name}.mp4", video, fps)
    strip_path = write_png(out_dir / f"{name}_strip.png", frame_strip(panels))
    logger.info("wrote %s (%d frames at %d fps) and %s", video_path, video.shape[0], fps, strip_path)
    return video_path, strip_path


def latent_preview(latents: torch.Tensor) -> torch.Tensor:
    """False-colour view of latents without a VAE: channels 0-2, normalised per clip, upsampled 8x.

    Args:
        latents: ``[1, 4, F, h, w]``.

    Returns:
        ``[F, 8h, 8w, 3]`` in 0..1.
    """
    x = latents[0, :3].float().cpu()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = ((x - lo) / (hi - lo).clamp_min(1e-6)).permute(1, 2, 3, 0)
    return x.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)
