"""The avatar pipeline as plain functions: what to film, how to film it, and how to generate from it.

Stages, each usable on its own (no ComfyUI needed)::

    motion = make_motion("walk", frames=16)                    # or load_motion_clip(path, 16)
    motion = place_on_ground(motion, body)                     # lowest vertex over the clip on y = 0
    camera = make_camera("orbit", motion, body, size=128)      # aimed at the subject's centre
    frames = render_avatar_video(body, motion, camera, 128)    # [F, S, S, 3] avatars on black
    video = generate_video(unet, vae, text_encoder, frames, "a person walking on a beach")

Conventions: world y-up, metres, ground plane y = 0, a person at rest faces +z. Videos run at
VIDEO_FPS = 8, the rate AMG was trained at (every 3rd frame of 24 fps video): 16 frames are 2
seconds. Motions are sampled at that rate before rendering (procedural motions are made at it,
motion files are resampled to it), so rendered frame k shows motion time k / 8 s.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from amg_model.camera.camera import Camera
from amg_model.errors import AMGError
from amg_model.smpl.motion import Motion

logger = logging.getLogger(__name__)

VIDEO_FPS = 8
"""Frame rate of AMG's training videos, and of every video this pipeline renders and writes."""
DEFAULT_MOTION = "walk"
DEFAULT_CAMERA = "orbit"
LATENT_DOWNSCALE = 8
TextEncoderFn = Callable[[list[str]], torch.Tensor]
StepCallback = Callable[[int, int, int, torch.Tensor, torch.Tensor], None]


class PipelineError(AMGError):
    """An input of the avatar pipeline cannot be used (bad size, frame count, file, ...)."""


# ----------------------------------------------------------------------------------------------
# What to film: a motion at the video frame rate, standing on the ground.
# ----------------------------------------------------------------------------------------------


def make_motion(
    kind: str = DEFAULT_MOTION, frames: int = 16, fps: float = VIDEO_FPS, body_type: str = "mannequin"
) -> Motion:
    """A one-person procedural motion (``smpl.procedural.KINDS``) of ``frames`` frames at ``fps``.

    Args:
        kind: "idle", "walk", "run", "wave", "jump" or "turn".
        frames: number of frames F.
        fps: frame rate; VIDEO_FPS makes one motion frame per video frame.
        body_type: the body type of the model that will pose it ("mannequin", "smpl", ...).
    """
    from amg_model.smpl.procedural import procedural_motion

    return procedural_motion(kind, frames=frames, fps=fps, body_type=body_type)


def load_motion_clip(
    path: str | Path, frames: int, fps: float = VIDEO_FPS, body_type: str | None = None
) -> Motion:
    """Read a motion file, resample it to ``fps`` and take its first ``frames`` frames.

    A clip shorter than ``frames`` frames (after resampling) holds its last pose to the end.

    Args:
        path: any file ``smpl.formats.load_motion`` reads.
        frames: number of frames F wanted.
        fps: frame rate of the result (VIDEO_FPS: one motion frame per video frame).
        body_type: convert every person to this body type (that of the body model used to pose).
    """
    from amg_model.smpl.edit import pad_person, resample
    from amg_model.smpl.formats import load_motion
    from amg_model.smpl.formats.convert import change_body_type

    if frames < 1:
        raise PipelineError(f"{Path(path).name}: asked for {frames} frames; use at least 1.")
    motion = load_motion(path)
    if motion.fps != fps:
        logger.info("%s: resampling from %g to %g fps", Path(path).name, motion.fps, fps)
        motion = resample(motion, fps)
    if motion.num_frames < frames:
        logger.warning(
            "%s: %d frames at %g fps, fewer than the %d asked for; holding the last pose",
            Path(path).name, motion.num_frames, fps, frames,
        )  # fmt: skip
    persons = [pad_person(p, frames, "hold") for p in motion.persons]
    if body_type is not None:
        persons = [p if p.body_type == body_type else change_body_type(p, body_type) for p in persons]
    return Motion(persons=persons, fps=float(fps))


def pose_vertices(body, motion: Motion) -> list[torch.Tensor]:
    """Posed vertices of every person: a list of [F, V, 3] world tensors (float32, CPU)."""
    with torch.no_grad():
        return [body.pose_person(p).vertices.float().cpu() for p in motion.persons]


def place_on_ground(motion: Motion, body) -> Motion:
    """Lift (or lower) each person so that its lowest vertex over the whole clip lies on y = 0.

    One offset per person for the whole clip, so jumps and steps keep their height above the
    ground. Procedural motions already stand on y = 0 (the shift is then millimetres); motion
    files from other tools may not.

    Args:
        motion: P persons over F frames.
        body: the BodyModel that will pose them (its soles decide the contact).
    """
    persons = []
    for person, verts in zip(motion.persons, pose_vertices(body, motion), strict=True):
        lowest = float(verts[..., 1].min())
        logger.debug("person %s: lowest vertex at y = %.3f m, moved onto the ground", person.name, lowest)
        offset = torch.tensor([0.0, -lowest, 0.0], dtype=person.transl.dtype, device=person.transl.device)
        persons.append(replace(person, transl=person.transl + offset))
    return replace(motion, persons=persons)


# ----------------------------------------------------------------------------------------------
# How to film it.
# ----------------------------------------------------------------------------------------------


def subject_target(motion: Motion, body, follow: bool = True) -> torch.Tensor:
    """Aim point [F, 3]: the centre of the bounding box of every person's posed vertices.

    Args:
        follow: one centre per frame (the camera follows the people) or the centre over the clip.
    """
    from amg_model.camera.presets import subject_center

    return subject_center(torch.cat(pose_vertices(body, motion), dim=1), follow=follow)


def make_camera(
    preset: str = DEFAULT_CAMERA,
    motion: Motion | None = None,
    body=None,
    size: int = 128,
    frames: int | None = None,
    follow: bool = True,
    distance: float = 3.5,
    height: float = 1.2,
    fov_deg: float = 45.0,
) -> Camera:
    """A preset camera move (``camera.presets.PRESET_NAMES``) aimed at the subject's centre.

    Args:
        preset: "orbit", "static", "dolly", ...
        motion, body: the people to film; without them the preset aims at (0, 1, 0).
        size: square image size in pixels.
        frames: number of frames (default: the motion's).
        follow: aim at the subject's centre on every frame (True) or at its centre over the clip
            (always the latter for a camera of another length than the motion).
        distance, height, fov_deg: the preset's framing (metres, metres above the ground, degrees).
    """
    from amg_model.camera.presets import camera_preset

    target = None
    if motion is not None and body is not None:
        frames = frames or motion.num_frames
        # A camera of another length than the motion cannot follow it frame by frame.
        follow = follow and frames == motion.num_frames
        target = subject_target(motion, body, follow)
        target = target if follow else target[0]
    return camera_preset(
        preset, frames=frames or 16, target=target, distance=distance, height=height, fov_deg=fov_deg,
        width=size, height_px=size,
    )  # fmt: skip


def load_camera_file(path: str | Path, frames: int, size: int, anchor: Camera | None = None) -> Camera:
    """Read a camera file and fit it to the video: ``frames`` frames of ``size`` x ``size`` pixels.

    ``.json``: the project's camera files (``camera.serialize``), used as they are. ``.txt``:
    CameraCtrl / RealEstate10K pose files; their world is arbitrary, so the trajectory is moved
    rigidly to start at ``anchor``'s first pose (e.g. the static preset facing the subject). A
    trajectory of another length is resampled over the clip; another image size is centre-cropped.
    """
    from amg_model.camera.compose import anchor_camera, retime_camera

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        from amg_model.camera.serialize import load_camera_json

        camera = load_camera_json(path)
    elif suffix == ".txt":
        from amg_model.camera.cameractrl import read_cameractrl_txt

        camera = read_cameractrl_txt(path, width=size, height=size)
        if anchor is not None:
            camera = anchor_camera(camera, anchor.w2c[0])
    else:
        raise PipelineError(
            f"{path.name}: camera files are .json (AMG camera) or .txt (CameraCtrl poses); "
            "rename or convert it."
        )
    if camera.num_frames != frames:
        logger.info("%s: %d camera frames resampled to %d", path.name, camera.num_frames, frames)
        camera = retime_camera(camera, frames)
    if (camera.width, camera.height) != (size, size):
        camera = camera.resized(size, size, fit="crop")
    return camera.to(dtype=torch.float32)


def render_avatar_video(
    body,
    motion: Motion,
    camera: Camera,
    size: int | None = None,
    appearance=None,
    supersample: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Render the conditioning video: the posed people, coloured and lit, on black.

    Args:
        body: BodyModel posing every person (``smpl.body.load_body_model``).
        motion: P persons over F frames, at the video frame rate.
        camera: F frames.
        size: square output size in pixels (default the camera's).
        appearance: per ``render.avatars.render_avatars`` (default: "casual" colours).
        supersample: anti-aliasing factor.
        progress: called as progress(frames_done, frames_total).

    Returns:
        float32 [F, H, W, 3] RGB in 0..1 (CPU).
    """
    from amg_model.render.avatars import render_avatars

    if motion.num_frames != camera.num_frames:
        raise PipelineError(
            f"the motion has {motion.num_frames} frames but the camera {camera.num_frames}; "
            "build the camera for the motion's frames."
        )
    out = render_avatars(
        body, motion, camera, appearance=appearance, size=None if size is None else (size, size),
        supersample=supersample, progress=progress,
    )  # fmt: skip
    return out.image.float().cpu().clamp(0.0, 1.0)


def render_preview(body, motion: Motion, camera: Camera, size: int = 512) -> torch.Tensor:
    """Diagram of the shot (camera path and skeletons, top and side views): [size/2, size, 3] in 0..1."""
    from amg_model.render.preview import render_scene_preview

    return render_scene_preview(motion, camera, body_model=body, size=size)


# ----------------------------------------------------------------------------------------------
# How to generate from it.
# ----------------------------------------------------------------------------------------------


def encode_prompt(text_encoder, prompt: str) -> torch.Tensor:
    """``[1, 77, D]`` embedding of one prompt.

    Args:
        text_encoder: ``model.text.TextEncoder`` (its ``encode``) or any ``list[str] -> [N, 77, D]``.
    """
    fn = getattr(text_encoder, "encode", text_encoder)
    if not callable(fn):
        raise PipelineError("the text encoder has no encode method; give a model.text.TextEncoder.")
    with torch.no_grad():
        emb = fn([prompt])
    return emb if emb.ndim == 3 else emb.unsqueeze(0)


def encode_frames(vae, frames: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """VAE latents of a video: ``[F, H, W, 3]`` in 0..1 -> ``[1, 4, F, H/8, W/8]``, scaled by 0.18215.

    Args:
        vae: ``model.vae.VideoVAE`` (``encode``: ``[F, 3, H, W]`` in [-1, 1] -> ``[F, 4, h, w]``).
        chunk: frames per VAE call (fewer: less memory, a little slower).
    """
    param = next(vae.parameters(), None) if isinstance(vae, torch.nn.Module) else None
    device = param.device if param is not None else frames.device
    x = frames.permute(0, 3, 1, 2).to(device) * 2.0 - 1.0
    with torch.no_grad():
        return vae.encode(x, chunk=chunk).permute(1, 0, 2, 3).unsqueeze(0).float()


def decode_latents(vae, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Frames of VAE latents: ``[1, 4, F, h, w]`` (scaled) -> ``[F, 8h, 8w, 3]`` in 0..1 (CPU).

    Args:
        chunk: frames per VAE call; each chunk's pixels move to the CPU before the next is decoded.
    """
    with torch.no_grad():
        parts = [
            vae.decode(part, chunk=chunk).float().cpu()
            for part in latents[0].permute(1, 0, 2, 3).split(chunk)
        ]
    x = torch.cat(parts)
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0).permute(0, 2, 3, 1)


@dataclass(frozen=True)
class MemoryOptions:
    """How :func:`generate_video` spends device memory; the defaults keep every model where it is.

    ``MemoryOptions.low_vram()`` is the setting for 8 GiB cards: the text encoder and the VAE wait on
    the CPU and visit the GPU only for their own stage, the UNet (a torch module, or a FastUNet in
    eager or CUDA-graph mode) leaves the GPU while the VAE decodes, the CUDA cache is emptied between
    stages, the VAE works on 4 frames at a time and long clips are sampled one 16-frame window per UNet
    call.

    Attributes:
        offload: keep the models on ``offload_device`` and move each to the compute device only for
            its stage (text encoding, VAE encoding, sampling, VAE decoding), back right after it.
        offload_device: where offloaded models wait (the CPU).
        vae_chunk: frames per VAE encode / decode call.
        window, overlap, window_batch, window_schedule: temporal windows of the sampler (see
            :func:`~amg_model.sampling.sample.sample_video`); ``window_batch`` None: 1 on the CPU, on CUDA
            as many windows per UNet call as about 60 % of the free memory holds.
    """

    offload: bool = False
    offload_device: str | torch.device = "cpu"
    vae_chunk: int = 8
    window: int = 16
    overlap: int = 4
    window_batch: int | None = None
    window_schedule: str = "overlap"

    def __post_init__(self) -> None:
        if self.vae_chunk < 1:
            raise PipelineError(f"vae_chunk={self.vae_chunk}: the VAE needs at least 1 frame per call.")

    @classmethod
    def low_vram(cls, **changes) -> MemoryOptions:
        """The 8 GiB-card setting (offloading, 4-frame VAE chunks, one window per UNet call)."""
        return replace(cls(offload=True, vae_chunk=4, window_batch=1), **changes)

    def window_kwargs(self) -> dict:
        """The sampler's window settings, as keyword arguments of ``sample_video``."""
        return dict(
            window=self.window, overlap=self.overlap, window_batch=self.window_batch,
            window_schedule=self.window_schedule,
        )  # fmt: skip


def _movable_module(model) -> torch.nn.Module | None:
    """The torch module whose weights can be moved between devices, or None.

    A FastUNet (``model.fast``) is moved through its ``.unet`` module in eager and CUDA-graph mode
    (its graphs are keyed by the weights' addresses: moved weights lead to a new capture); compiled
    code keeps the addresses it was made with, so a compiled UNet stays where it is.
    """
    if isinstance(model, torch.nn.Module):
        return model
    inner = getattr(model, "unet", None)
    if isinstance(inner, torch.nn.Module) and getattr(model, "mode", "eager") in ("eager", "cuda_graph"):
        return inner
    return None


def _offload(model, module: torch.nn.Module, memory: MemoryOptions) -> None:
    """Move ``module`` (``model``'s weights) to the offload device; a graphed UNet's CUDA graphs go too,
    or their activation memory would stay on the compute device."""
    module.to(device=torch.device(memory.offload_device))
    if hasattr(model, "release_graphs"):
        model.release_graphs()


def _free_device_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _on_device(model, name: str, device: torch.device, memory: MemoryOptions) -> Iterator[None]:
    """With ``memory.offload``: ``model`` on ``device`` inside the block, on the offload device after it.

    The CUDA cache is emptied after the block, so the next stage finds the memory this one freed.
    """
    if not memory.offload:
        yield
        return
    module = _movable_module(model)
    if module is None:
        logger.info("%s cannot be moved (no torch module, or CUDA graphs / compiled); it stays", name)
    else:
        logger.debug("%s -> %s", name, device)
        module.to(device=device)
    try:
        yield
    finally:
        if module is not None:
            logger.debug("%s -> %s", name, memory.offload_device)
            _offload(model, module, memory)
        _free_device_cache(device)


def sample_latents(
    unet,
    avatar_latents: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    steps: int = 20,
    guidance: float = 3.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    callback: StepCallback | None = None,
    **window,
) -> torch.Tensor:
    """Guided DDIM from avatar latents (``sampling.sample.sample_video``) -> ``[1, 4, F, h, w]``.

    The UNet runs in its own precision: ``model.runtime.prepare_unet`` chooses it per device.
    ``window`` holds the sampler's temporal-window settings (``window``, ``overlap``, ``window_batch``,
    ``window_schedule``; :meth:`MemoryOptions.window_kwargs`).
    """
    from amg_model.sampling.sample import sample_video

    device = torch.device(device)
    return sample_video(
        unet, avatar_latents.to(device), cond.to(device), uncond.to(device),
        steps=steps, guidance=guidance, seed=seed, callback=callback, **window,
    )  # fmt: skip


def generate_video(
    unet,
    vae,
    text_encoder,
    frames: torch.Tensor,
    prompt: str,
    negative: str = "",
    steps: int = 20,
    guidance: float = 3.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    callback: StepCallback | None = None,
    memory: MemoryOptions | None = None,
) -> torch.Tensor:
    """Generate a video that follows an avatar render: encode, sample, decode.

    Args:
        unet: AMG UNet ``(x [N, 8, F, h, w], t [N], context [N, 77, D]) -> eps [N, 4, F, h, w]``.
        vae: ``model.vae.VideoVAE`` (SD 2.1's, or ``tiny_vae()``).
        text_encoder: ``model.text.TextEncoder`` (OpenCLIP ViT-H-14, or ``tiny_text_encoder(D)``).
        frames: ``[F, H, W, 3]`` avatar render in 0..1, H and W multiples of 8.
        prompt, negative: texts for classifier-free guidance (the original's negative is "").
        steps, guidance, seed: DDIM settings (see ``sampling.sample.sample_video``).
        device: where the models run (each for its stage when offloading).
        callback: called after each step as ``callback(i, total, t, x_t, x0_pred)``.
        memory: offloading, VAE chunks and temporal windows (default :class:`MemoryOptions`: no
            offloading; ``MemoryOptions.low_vram()`` for 8 GiB cards).

    Returns:
        ``[F, H, W, 3]`` generated frames in 0..1 (CPU).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise PipelineError(f"avatar frames have shape {tuple(frames.shape)}; give [F, H, W, 3] RGB in 0..1.")
    if frames.shape[1] % LATENT_DOWNSCALE or frames.shape[2] % LATENT_DOWNSCALE:
        raise PipelineError(
            f"avatar frames are {frames.shape[2]}x{frames.shape[1]} pixels; the VAE needs multiples of 8."
        )
    memory = memory or MemoryOptions()
    device = torch.device(device)
    if memory.offload:  # everything waits on the offload device, whatever it was given on
        for model in (text_encoder, vae, unet):
            if (module := _movable_module(model)) is not None:
                _offload(model, module, memory)
        _free_device_cache(device)
    window = memory.window_kwargs()
    with _on_device(text_encoder, "text encoder", device, memory):
        cond, uncond = encode_prompt(text_encoder, prompt), encode_prompt(text_encoder, negative)
    with _on_device(vae, "VAE", device, memory):
        avatar_latents = encode_frames(vae, frames, memory.vae_chunk)
    with _on_device(unet, "UNet", device, memory):
        latents = sample_latents(
            unet, avatar_latents, cond, uncond, steps, guidance, seed, device, callback, **window
        )  # fmt: skip
    with _on_device(vae, "VAE", device, memory):
        return decode_latents(vae, latents, memory.vae_chunk)
