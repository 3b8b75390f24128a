"""Headless AMG demo: avatars -> conditioning video -> latents -> guided DDIM -> decoded video files.

Two entry points, both used by ``python -m amg_model demo``:

* :func:`run_demo` runs the whole avatar pipeline (:mod:`amg_model.pipeline`): a body model (the
  built-in mannequin, or an SMPL-family file) performs a procedural motion (or a motion file), a
  preset camera (or a camera file) films it aimed at the subject's centre, the avatars are
  rendered on black, VAE-encoded, sampled with AMG's guided DDIM and decoded. It writes the
  ``[avatar | generated]`` mp4, the avatar render alone, a PNG strip and a diagram of the shot.
  With no weights given it runs tiny random-weight models (no downloads, seconds on a CPU): the
  generated frames are noise shaped by the pipeline, which shows that every stage runs, not what
  AMG looks like. With real weights the same call gives real AMG output.
* :func:`reproduce_change_background` re-runs the original change-background demo from its
  released latents and text embeddings.

Models are loaded in :mod:`amg_model.demo_models`, files written by :mod:`amg_model.video_io`.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from amg_model import pipeline
from amg_model.demo_models import REAL_CONTEXT_DIM, DemoError, DemoModels, load_demo_models
from amg_model.video_io import latent_preview, write_mp4, write_outputs, write_png

__all__ = [
    "CHANGE_BACKGROUND", "DEFAULT_PROMPT", "LATENT_SCALE", "REAL_CONTEXT_DIM", "SAMPLE_FPS", "TEXT_TOKENS",
    "DemoError", "DemoModels", "DemoResult", "default_data_dir", "latent_preview", "load_change_background",
    "load_demo_models", "render_conditioning", "reproduce_change_background", "run_demo", "write_outputs",
]  # fmt: skip

logger = logging.getLogger(__name__)

LATENT_SCALE = 0.18215
"""SD 2.1 VAE latent scale factor; demo latents are stored already multiplied by it."""
SAMPLE_FPS = pipeline.VIDEO_FPS
"""Frame rate the model was trained at (every 3rd frame of 24 fps); outputs are written at it."""
TEXT_TOKENS = 77
DEFAULT_PROMPT = "a person walking on a sunny beach, waves in the background, high quality video"
DEFAULT_SIZE = 128
CHANGE_BACKGROUND = "change_background"
PREVIEW_SIZE = 512


# ----------------------------------------------------------------------------------------------
# What the avatars do and how they are filmed.
# ----------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """A body model, its motion and the camera filming it, all over the same F frames."""

    body: torch.nn.Module
    motion: object
    camera: object


def build_scene(
    frames: int = 16,
    size: int = DEFAULT_SIZE,
    body: str = "mannequin",
    motion: str = pipeline.DEFAULT_MOTION,
    motion_file: str | None = None,
    camera: str = pipeline.DEFAULT_CAMERA,
    camera_file: str | None = None,
    follow: bool = True,
) -> Scene:
    """Body + motion (at :data:`SAMPLE_FPS`, standing on y = 0) + camera aimed at the subject.

    Args:
        frames: number of frames ``F``.
        size: square image size in pixels.
        body: "mannequin" or an SMPL / SMPL-H / SMPL-X model file.
        motion: procedural kind ("walk", "run", ...), used when ``motion_file`` is None.
        motion_file: a motion file (any format ``smpl.formats.load_motion`` reads).
        camera: preset name, used when ``camera_file`` is None.
        camera_file: ``.json`` (AMG camera) or ``.txt`` (CameraCtrl poses, placed to start where
            the static preset would film the subject).
        follow: the preset aims at the subject's centre on every frame (else its centre over the clip).
    """
    from amg_model.smpl.body import load_body_model

    body_model = load_body_model(body)
    if motion_file:
        clip = pipeline.load_motion_clip(motion_file, frames, SAMPLE_FPS, body_type=body_model.body_type)
    else:
        clip = pipeline.make_motion(motion, frames, SAMPLE_FPS, body_type=body_model.body_type)
    clip = pipeline.place_on_ground(clip, body_model)
    if camera_file:
        anchor = pipeline.make_camera("static", clip, body_model, size, follow=False)
        cam = pipeline.load_camera_file(camera_file, frames, size, anchor=anchor)
    else:
        cam = pipeline.make_camera(camera, clip, body_model, size, follow=follow)
    return Scene(body_model, clip, cam)


def render_conditioning(frames: int = 16, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Render the default conditioning video: the mannequin walking, filmed by an orbiting camera.

    Args:
        frames: number of frames ``F`` (at :data:`SAMPLE_FPS`).
        size: frame height and width ``S`` in pixels (a multiple of 8 for the VAE).
        seed: varies the avatar's clothing colours.

    Returns:
        float32 ``[F, S, S, 3]`` RGB in 0..1, the avatar on black.
    """
    scene = build_scene(frames, size)
    return _render(scene, size, seed, progress=False)


def _render(scene: Scene, size: int, seed: int, progress: bool) -> torch.Tensor:
    from tqdm import tqdm

    from amg_model.render.appearance import appearance_preset

    looks = [appearance_preset("casual", index=i, seed=seed) for i in range(len(scene.motion.persons))]
    bar = tqdm(
        total=scene.camera.num_frames, desc="rendering", unit="frame", file=sys.stderr, disable=not progress
    )

    def advance(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        return pipeline.render_avatar_video(
            scene.body, scene.motion, scene.camera, size, looks, progress=advance
        )
    finally:
        bar.close()


# ----------------------------------------------------------------------------------------------
# Sampling and output.
# ----------------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """Files a demo run wrote and what it used.

    Attributes:
        video_path: ``[avatar | generated]`` mp4.
        strip_path: PNG of every frame, a row per panel.
        frames, fps: length and frame rate of the videos.
        notes: which models were stand-ins, for the user.
        render_path: the avatar render alone (mp4), where the run rendered one.
        preview_path: diagram of the camera path and the subjects (PNG), where there is a scene.
    """

    video_path: Path
    strip_path: Path
    frames: int
    fps: int
    notes: list[str]
    render_path: Path | None = None
    preview_path: Path | None = None
    files: list[Path] = field(default_factory=list)


def _progress_callback(steps: int, progress: bool):
    from tqdm import tqdm

    bar = tqdm(total=steps, desc="sampling", unit="step", file=sys.stderr, disable=not progress)

    def callback(i: int, total: int, t: int, x_t: torch.Tensor, x0: torch.Tensor) -> None:
        bar.total = total
        bar.set_postfix(t=t)
        bar.update(1)

    return bar, callback


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise DemoError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu.")
    return torch.device(device)


def _load_models(
    unet_path: str | None,
    vae_path: str | None,
    text_encoder_path: str | None,
    device: torch.device,
    context_dim: int | None = None,
    precision: str = "auto",
    unet_mode: str = "auto",
) -> DemoModels:
    """Load the models for either entry point (``load_demo_models`` wraps the UNet with prepare_unet)."""
    return load_demo_models(unet_path, vae_path, text_encoder_path, device, context_dim, precision, unet_mode)


def run_demo(
    out_dir: str | Path = "output/demo",
    frames: int = 16,
    size: int = DEFAULT_SIZE,
    steps: int = 20,
    seed: int = 0,
    prompt: str = DEFAULT_PROMPT,
    guidance: float = 3.0,
    unet_path: str | None = None,
    vae_path: str | None = None,
    text_encoder_path: str | None = None,
    device: str | None = None,
    progress: bool = True,
    precision: str = "auto",
    unet_mode: str = "auto",
    negative: str = "",
    body: str = "mannequin",
    motion: str = pipeline.DEFAULT_MOTION,
    motion_file: str | None = None,
    camera: str = pipeline.DEFAULT_CAMERA,
    camera_file: str | None = None,
    follow: bool = True,
    memory: pipeline.MemoryOptions | None = None,
) -> DemoResult:
    """Run the avatar pipeline end to end and write its files into ``out_dir``.

    Files: ``demo.mp4`` (``[avatar | generated]`` side by side), ``demo_avatars.mp4`` (the
    conditioning render alone), ``demo_strip.png`` (every frame; rows: avatar, generated) and
    ``demo_scene.png`` (camera path and subjects from above and from the side). Videos are at
    :data:`SAMPLE_FPS`: the motion is sampled at that rate, one motion frame per video frame.

    Args:
        out_dir: output folder (created).
        frames: number of frames ``F``; above 16 the sampler uses overlapping windows.
        size: frame size in pixels (multiple of 8).
        steps, seed, prompt, negative, guidance: sampling settings (see :func:`sample_video`);
            ``seed`` also picks the avatar's colours.
        unet_path, vae_path, text_encoder_path: real weights; tiny stand-ins where None.
        device: "cpu" or "cuda"; default: CUDA when available.
        precision, unet_mode: UNet precision and execution mode (see :func:`load_demo_models`).
        body, motion, motion_file, camera, camera_file, follow: the scene (see :func:`build_scene`).
        memory: offloading, VAE chunks and windows (``pipeline.MemoryOptions``; ``.low_vram()`` for
            8 GiB cards: the models are then loaded on its offload device, the CPU).

    Returns:
        The written files; ``notes`` says which models were stand-ins.
    """
    if size % 8 or size < 16:
        raise DemoError(f"--size {size}: use a multiple of 8 of at least 16 (the VAE works on 8x8 blocks).")
    if frames < 1:
        raise DemoError(f"--frames {frames}: use at least 1 frame.")
    dev = _resolve_device(device)
    scene = build_scene(frames, size, body, motion, motion_file, camera, camera_file, follow)
    avatar_frames = _render(scene, size, seed, progress)
    memory = memory or pipeline.MemoryOptions()
    offload_device = memory.offload_device if memory.offload else None
    models = load_demo_models(
        unet_path, vae_path, text_encoder_path, dev, None, precision, unet_mode, offload_device
    )
    bar, callback = _progress_callback(steps, progress)
    try:
        generated = pipeline.generate_video(
            models.unet, models.vae, models.text_encoder, avatar_frames, prompt, negative,
            steps=steps, guidance=guidance, seed=seed, device=dev, callback=callback, memory=memory,
        )  # fmt: skip
    finally:
        bar.close()
    out = Path(out_dir)
    video, strip = write_outputs(out, "demo", [avatar_frames, generated], fps=SAMPLE_FPS)
    render = write_mp4(out / "demo_avatars.mp4", avatar_frames, SAMPLE_FPS)
    preview = write_png(
        out / "demo_scene.png", pipeline.render_preview(scene.body, scene.motion, scene.camera, PREVIEW_SIZE)
    )
    logger.info("wrote %s and %s", render, preview)
    return DemoResult(
        video, strip, frames, SAMPLE_FPS, models.notes, render, preview, [video, render, strip, preview]
    )


def default_data_dir() -> Path:
    """``../shared/data/amg-demo`` next to the repository (where the demo data is kept)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amg-demo"


def load_change_background(data_dir: str | Path) -> dict[str, object]:
    """Read the change-background demo inputs.

    Returns:
        ``avatar_latents`` ``[1, 4, 16, 32, 32]`` (scaled), ``caption_y`` / ``zero_y`` ``[1, 77, 1024]``,
        ``new_caption`` (str) and ``name`` (the original's output name).
    """
    from safetensors.torch import load_file

    data_dir = Path(data_dir)
    tensors_path = data_dir / "change_background.safetensors"
    captions_path = data_dir / "change_background_captions.json"
    if not tensors_path.is_file() or not captions_path.is_file():
        raise DemoError(
            f"{data_dir}: change_background.safetensors and change_background_captions.json are needed; "
            "point --data at the AMG demo data folder."
        )
    tensors = load_file(str(tensors_path))
    captions = json.loads(captions_path.read_text())
    return {
        "avatar_latents": tensors["avatar_latents"].permute(1, 0, 2, 3).unsqueeze(0),
        "caption_y": tensors["caption_y"].unsqueeze(0),
        "zero_y": tensors["zero_y"].unsqueeze(0),
        "new_caption": captions["new_captions"][0],
        "name": captions["new_caption_file_names"][0],
    }


def reproduce_change_background(
    data_dir: str | Path | None = None,
    out_dir: str | Path = "output/demo",
    steps: int = 20,
    seed: int = 0,
    guidance: float = 3.0,
    unet_path: str | None = None,
    vae_path: str | None = None,
    text_encoder_path: str | None = None,
    device: str | None = None,
    progress: bool = True,
    precision: str = "auto",
    unet_mode: str = "auto",
) -> DemoResult:
    """Re-run the original change-background demo (new autumn-forest caption on the same avatars).

    With a text encoder the new caption is encoded; without one the clip's original caption
    embedding (``caption_y``) is used. Without ``unet_path`` a tiny random-weight UNet runs on the same
    latents (a pipeline check, not the demo's result). Output: ``<name>.mp4`` with
    ``[avatar | generated]`` at 8 fps (the original wrote 4 fps although it sampled at 8).
    """
    data = load_change_background(data_dir or default_data_dir())
    dev = _resolve_device(device)
    context_dim = data["caption_y"].shape[-1]
    models = _load_models(unet_path, vae_path, text_encoder_path, dev, context_dim, precision, unet_mode)
    notes = [n for n in models.notes if not n.startswith(("text encoder", "VAE: tiny"))]
    if text_encoder_path:
        cond = models.encode_text(data["new_caption"])
        notes.append("prompt: the demo's new caption (autumn forest trail), encoded")
    else:
        cond = data["caption_y"]
        notes.append(
            "prompt: the clip's ORIGINAL caption embedding (caption_y); pass --text-encoder to encode the "
            "new autumn-forest caption"
        )
    if cond.shape[-1] != context_dim:
        raise DemoError(
            f"the text encoder gives width {cond.shape[-1]} but the demo data has {context_dim}; "
            "use the OpenCLIP ViT-H-14 encoder."
        )
    avatar_latents, uncond = data["avatar_latents"], data["zero_y"]
    bar, callback = _progress_callback(steps, progress)
    try:
        latents = pipeline.sample_latents(
            models.unet, avatar_latents, cond, uncond, steps, guidance, seed, dev, callback
        )
    finally:
        bar.close()
    decode = models.decode_video if models.real_vae else latent_preview
    with torch.no_grad():
        generated = decode(latents)
        avatar = decode(avatar_latents)
    if not models.real_vae:
        notes.append("frames are a false-colour latent preview (no VAE); pass --vae to decode them")
    video, strip = write_outputs(Path(out_dir), str(data["name"]), [avatar, generated], fps=SAMPLE_FPS)
    return DemoResult(video, strip, generated.shape[0], SAMPLE_FPS, notes, files=[video, strip])
