"""Headless AMG demo: avatar conditioning video -> latents -> guided DDIM -> decoded video files.

Two entry points, both used by ``python -m amg_model demo``:

* :func:`run_demo` renders a conditioning video with :func:`render_conditioning`, encodes it, samples
  and writes ``[avatar | generated]`` as an mp4 and a PNG strip. With no weights given it runs
  tiny random-weight models (no downloads, seconds on a CPU): the output is noise shaped by the
  pipeline, which shows that every stage runs, not what AMG looks like.
* :func:`reproduce_change_background` re-runs the original change-background demo from its
  released latents and text embeddings.

The avatar pipeline (body model + motion + camera -> rendered video) plugs in through
:func:`render_conditioning`, the one seam between "what to film" and "how to generate".
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from amg_model.errors import AMGError, CheckpointError
from amg_model.model.runtime import prepare_unet
from amg_model.sampling.sample import sample_video

logger = logging.getLogger(__name__)

LATENT_SCALE = 0.18215
"""SD 2.1 VAE latent scale factor; demo latents are stored already multiplied by it."""
SAMPLE_FPS = 8
"""Frame rate the model was trained at (every 3rd frame of 24 fps); outputs are written at it."""
TEXT_TOKENS = 77
REAL_CONTEXT_DIM = 1024
DEFAULT_PROMPT = "two people dancing on a sunny beach, waves in the background, high quality video"
CHANGE_BACKGROUND = "change_background"


class DemoError(AMGError):
    """The demo cannot run with the given files and settings."""


# ----------------------------------------------------------------------------------------------
# The seam: what the avatars do and how they are filmed.
# ----------------------------------------------------------------------------------------------


def render_conditioning(frames: int = 16, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Render the avatar video that conditions generation.

    This is the place where the avatar pipeline plugs in: body model + procedural motion + orbit
    camera -> rendered frames (``amg_model.smpl``, ``amg_model.camera``, ``amg_model.render``). Until
    then it draws two flat-shaded walking figures on black, the look of AMG's conditioning renders
    (textured people on a black background with soft edges).

    Args:
        frames: number of frames ``F`` (at :data:`SAMPLE_FPS`).
        size: frame height and width ``S`` in pixels (a multiple of 8 for the VAE).
        seed: varies the figures' colours and phases.

    Returns:
        float32 ``[F, S, S, 3]`` RGB in 0..1.
    """
    import cv2

    rng = np.random.default_rng(seed)
    out = np.zeros((frames, size, size, 3), dtype=np.float32)
    people = [
        {"x0": x0, "speed": speed, "phase": rng.uniform(0, 2 * math.pi), "colour": rng.uniform(0.4, 1.0, 3)}
        for x0, speed in ((0.3, 0.01), (0.7, -0.008))
    ]
    for f in range(frames):
        img = np.zeros((size, size, 3), dtype=np.float32)
        for p in people:
            swing = math.sin(p["phase"] + 2 * math.pi * f / 8.0)
            cx = (p["x0"] + p["speed"] * f) * size
            s = size / 64.0
            hip, neck = (cx, 40 * s), (cx, 22 * s)
            colour = tuple(float(c) for c in p["colour"])
            skin = (0.9, 0.75, 0.6)

            def pt(x: float, y: float) -> tuple[int, int]:
                return int(round(x)), int(round(y))

            thick = max(1, int(round(3 * s)))
            for sign in (1, -1):  # legs and arms swing in opposition
                cv2.line(img, pt(*hip), pt(cx + sign * 6 * s * swing, 56 * s), colour, thick)
                cv2.line(img, pt(*neck), pt(cx - sign * 6 * s * swing, 34 * s), skin, max(1, thick - 1))
            cv2.line(img, pt(*hip), pt(*neck), colour, max(1, int(round(5 * s))))
            cv2.circle(img, pt(cx, 16 * s), max(1, int(round(4 * s))), skin, -1)
        out[f] = cv2.GaussianBlur(img, (0, 0), sigmaX=max(0.5, 0.6 * size / 64.0))
    return torch.from_numpy(np.clip(out, 0.0, 1.0))


# ----------------------------------------------------------------------------------------------
# Models: tiny random-weight stand-ins or real weights, behind three plain callables.
# ----------------------------------------------------------------------------------------------


@dataclass
class DemoModels:
    """The three models the demo needs, as plain callables.

    Attributes:
        unet: ``(x [N, 8, F, h, w], t [N], context [N, 77, D]) -> eps [N, 4, F, h, w]``.
        encode_text: ``prompt -> [1, 77, D]``.
        encode_video: ``[F, H, W, 3] in 0..1 -> [1, 4, F, H/8, W/8]`` (scaled by 0.18215).
        decode_video: ``[1, 4, F, h, w]`` (scaled) ``-> [F, 8h, 8w, 3] in 0..1``.
        context_dim: ``D``.
        notes: what was used, for the user (e.g. "tiny random-weight UNet").
    """

    unet: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    encode_text: Callable[[str], torch.Tensor]
    encode_video: Callable[[torch.Tensor], torch.Tensor]
    decode_video: Callable[[torch.Tensor], torch.Tensor]
    context_dim: int
    real_vae: bool = False
    notes: list[str] = field(default_factory=list)


def _tiny_unet(context_dim: int, device: torch.device, seed: int = 0) -> torch.nn.Module:
    """Random-weight 2-level AMG-shaped UNet (8 in, 4 out) with the given context width.

    Attention sits at the coarser level only, which keeps 32x32 latents (the original demo's size)
    affordable on a CPU.
    """
    from dataclasses import replace

    from amg_model.model.tiny import tiny_unet, tiny_unet_config

    config = replace(tiny_unet_config(), cross_attention_dim=context_dim, attention_levels=(False, True))
    return tiny_unet(seed, config).to(device)


def _tiny_text_encoder(context_dim: int) -> Callable[[str], torch.Tensor]:
    """Random-weight OpenCLIP-style text encoder of width ``D`` (a hashed embedding if unavailable)."""
    try:
        from amg_model.model.text import tiny_text_encoder
    except ImportError:
        return _hash_text_encoder(context_dim)
    return _adapt_text_encoder(tiny_text_encoder(context_dim))


def _hash_text_encoder(context_dim: int) -> Callable[[str], torch.Tensor]:
    """Stand-in text encoder: a fixed pseudo-random ``[1, 77, D]`` embedding per prompt."""

    def encode(prompt: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "little")
        return torch.randn(1, TEXT_TOKENS, context_dim, generator=torch.Generator().manual_seed(seed))

    return encode


VideoFn = Callable[[torch.Tensor], torch.Tensor]


def _projection_vae() -> tuple[VideoFn, VideoFn]:
    """Stand-in VAE: 8x8 average pooling with a fixed RGB->4 projection, and its pseudo-inverse."""
    # Rows: latent channels; columns: R, G, B, bias. Chosen to be well conditioned, not learned.
    proj = torch.tensor(
        [[0.8, 0.6, 0.4, -0.3], [-0.5, 0.7, 0.2, -0.1], [0.3, -0.2, 0.9, -0.2], [-0.6, -0.6, -0.6, 0.9]]
    )
    inverse = torch.linalg.pinv(proj[:, :3])

    def encode(frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float()  # [F, 3, H, W]
        x = torch.nn.functional.avg_pool2d(x, 8)
        lat = torch.einsum("cr,frhw->cfhw", proj[:, :3], x) + proj[:, 3].view(4, 1, 1, 1)
        return lat.unsqueeze(0)

    def decode(latents: torch.Tensor) -> torch.Tensor:
        lat = latents[0].float().cpu() - proj[:, 3].view(4, 1, 1, 1)
        rgb = torch.einsum("rc,cfhw->fhwr", inverse, lat)
        rgb = rgb.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)
        return rgb.clamp(0.0, 1.0)

    return encode, decode


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


def load_demo_models(
    unet_path: str | None = None,
    vae_path: str | None = None,
    text_encoder_path: str | None = None,
    device: str | torch.device = "cpu",
    context_dim: int | None = None,
    precision: str = "auto",
    unet_mode: str = "auto",
) -> DemoModels:
    """Load the demo's models: real ones where a path is given, tiny stand-ins otherwise.

    Args:
        unet_path: AMG UNet (the released ``.pth`` or a converted ``.safetensors``).
        vae_path: Stable Diffusion 2.1 checkpoint or VAE file.
        text_encoder_path: OpenCLIP ViT-H-14 weights (``open_clip_pytorch_model.bin``).
        device: where the UNet runs.
        context_dim: text width for the tiny models (default: 1024 with a real text encoder or real
            data, else the tiny default).
        precision, unet_mode: UNet precision and execution mode (see
            :func:`~amg_model.model.runtime.prepare_unet`; "auto": fp16 with CUDA graphs on CUDA).
    """
    device = torch.device(device)
    notes: list[str] = []
    real_vae = False
    unet = None
    if unet_path:
        from amg_model.model.checkpoint import load_unet

        unet = load_unet(unet_path, device=device)
        notes.append(f"UNet: {unet_path}")
    if text_encoder_path:
        from amg_model.model.text import load_text_encoder

        encode_text = _adapt_text_encoder(load_text_encoder(text_encoder_path, device=device))
        dim = REAL_CONTEXT_DIM
        notes.append(f"text encoder: {text_encoder_path}")
    else:
        dim = getattr(unet, "context_dim", None) or context_dim or (REAL_CONTEXT_DIM if unet_path else 32)
        encode_text = _tiny_text_encoder(dim)
        notes.append("text encoder: tiny random weights (pass --text-encoder)")
    if unet is None:
        unet = _tiny_unet(dim, device)
        notes.append("UNet: tiny random weights (output is structured noise; pass --unet for real results)")
    elif getattr(unet, "context_dim", dim) != dim:
        raise DemoError(
            f"{Path(unet_path).name} expects text width {unet.context_dim} but the text encoder gives {dim}; "
            "use the AMG UNet with the OpenCLIP ViT-H-14 encoder."
        )
    if vae_path:
        from amg_model.model.vae import load_vae

        encode_video, decode_video = _adapt_vae(load_vae(vae_path, device=device), device)
        real_vae = True
        notes.append(f"VAE: {vae_path}")
    else:
        encode_video, decode_video = _tiny_vae(device)
        notes.append("VAE: tiny random weights (pass --vae)")
    unet = prepare_unet(unet, device, precision, unet_mode)
    return DemoModels(unet, encode_text, encode_video, decode_video, dim, real_vae, notes)


def _adapt_text_encoder(encoder: object) -> Callable[[str], torch.Tensor]:
    """``prompt -> [1, 77, D]`` from the library's text encoder (``encode`` method or callable)."""
    fn = getattr(encoder, "encode", encoder)
    if not callable(fn):
        raise CheckpointError("the loaded text encoder has no encode method; update amg_model.")

    def encode(prompt: str) -> torch.Tensor:
        emb = fn([prompt])
        return emb if emb.ndim == 3 else emb.unsqueeze(0)

    return encode


def _adapt_vae(vae: object, device: torch.device) -> tuple[VideoFn, VideoFn]:
    """Video encode/decode in the demo's layout from the library's frame-wise ``VideoVAE``.

    ``VideoVAE.encode`` takes ``[F, 3, H, W]`` in [-1, 1] and returns scaled latents ``[F, 4, h, w]``;
    ``decode`` is its inverse.
    """
    if not (hasattr(vae, "encode") and hasattr(vae, "decode")):
        raise CheckpointError("the loaded VAE has no encode/decode methods; update amg_model.")

    def encode(frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).to(device) * 2.0 - 1.0  # [F, 3, H, W] in [-1, 1]
        return vae.encode(x).permute(1, 0, 2, 3).unsqueeze(0).float()  # [1, 4, F, h, w]

    def decode(latents: torch.Tensor) -> torch.Tensor:
        x = vae.decode(latents[0].permute(1, 0, 2, 3).to(device))  # [F, 3, H, W]
        return ((x.float().cpu() + 1.0) * 0.5).clamp(0.0, 1.0).permute(0, 2, 3, 1)

    return encode, decode


def _tiny_vae(device: torch.device) -> tuple[VideoFn, VideoFn]:
    """Random-weight SD-shaped VAE (the projection stand-in if the library has none)."""
    try:
        from amg_model.model.vae import tiny_vae
    except ImportError:
        return _projection_vae()
    return _adapt_vae(tiny_vae().to(device), device)


# ----------------------------------------------------------------------------------------------
# Sampling and output.
# ----------------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """Files a demo run wrote and what it used."""

    video_path: Path
    strip_path: Path
    frames: int
    fps: int
    notes: list[str]


def _sample(
    models: DemoModels,
    avatar_latents: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    steps: int,
    guidance: float,
    seed: int,
    device: torch.device,
    progress: bool,
) -> torch.Tensor:
    from tqdm import tqdm

    bar = tqdm(total=steps, desc="sampling", unit="step", file=sys.stderr, disable=not progress)

    def callback(i: int, total: int, t: int, x_t: torch.Tensor, x0: torch.Tensor) -> None:
        bar.total = total
        bar.set_postfix(t=t)
        bar.update(1)

    # As the original: fp16 autocast over fp32 weights on CUDA, plain fp32 on the CPU.
    try:
        with torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda"):
            return sample_video(
                models.unet,
                avatar_latents.to(device),
                cond.to(device),
                uncond.to(device),
                steps=steps,
                guidance=guidance,
                seed=seed,
                callback=callback,
            )
    finally:
        bar.close()


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """``[F, H, W, 3]`` in 0..1 -> uint8 RGB numpy."""
    return (frames.detach().float().cpu().clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def write_outputs(
    out_dir: Path, name: str, panels: list[torch.Tensor], fps: int = SAMPLE_FPS
) -> tuple[Path, Path]:
    """Write panels side by side as ``<name>.mp4`` and a ``<name>_strip.png`` (one row per panel).

    Args:
        panels: each ``[F, H, W, 3]`` in 0..1, same ``F`` and ``H`` (e.g. avatar, generated).
        fps: frame rate of the mp4.

    Returns:
        ``(mp4 path, png path)``.
    """
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = [_to_uint8(p) for p in panels]
    video = np.concatenate(arrays, axis=2)  # [F, H, sum W, 3]
    frames, height, width = video.shape[:3]
    video_path = out_dir / f"{name}.mp4"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise DemoError(f"{video_path}: OpenCV cannot write mp4v video; install opencv-python with FFmpeg.")
    try:
        for frame in video:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        writer.release()
    strip = np.concatenate([np.concatenate(list(a), axis=1) for a in arrays], axis=0)  # rows: panels
    strip_path = out_dir / f"{name}_strip.png"
    if not cv2.imwrite(str(strip_path), np.ascontiguousarray(strip[:, :, ::-1])):
        raise DemoError(f"{strip_path}: OpenCV could not write the PNG; check that the folder is writable.")
    logger.info("wrote %s (%d frames at %d fps) and %s", video_path, frames, fps, strip_path)
    return video_path, strip_path


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise DemoError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu.")
    return torch.device(device)


def run_demo(
    out_dir: str | Path = "output/demo",
    frames: int = 16,
    size: int = 64,
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
) -> DemoResult:
    """Render a conditioning video, generate from it, and write ``[avatar | generated]`` files.

    Args:
        out_dir: output folder (created).
        frames: number of frames ``F``; above 16 the sampler uses overlapping windows.
        size: frame size in pixels (multiple of 8).
        steps, seed, prompt, guidance: sampling settings (see :func:`sample_video`).
        unet_path, vae_path, text_encoder_path: real weights; tiny stand-ins where None.
        device: "cpu" or "cuda"; default: CUDA when available.
        precision, unet_mode: see :func:`load_demo_models`.

    Returns:
        The written files; ``notes`` says which models were stand-ins.
    """
    if size % 8 or size < 16:
        raise DemoError(f"--size {size}: use a multiple of 8 of at least 16 (the VAE works on 8x8 blocks).")
    if frames < 1:
        raise DemoError(f"--frames {frames}: use at least 1 frame.")
    dev = _resolve_device(device)
    models = load_demo_models(unet_path, vae_path, text_encoder_path, dev, None, precision, unet_mode)
    avatar_frames = render_conditioning(frames, size, seed)
    with torch.no_grad():
        avatar_latents = models.encode_video(avatar_frames)
        cond, uncond = models.encode_text(prompt), models.encode_text("")
    latents = _sample(models, avatar_latents, cond, uncond, steps, guidance, seed, dev, progress)
    with torch.no_grad():
        generated = models.decode_video(latents)
    video, strip = write_outputs(Path(out_dir), "demo", [avatar_frames, generated])
    return DemoResult(video, strip, frames, SAMPLE_FPS, models.notes)


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
    models = load_demo_models(
        unet_path, vae_path, text_encoder_path, dev, context_dim, precision, unet_mode
    )
    notes = [n for n in models.notes if not n.startswith(("text encoder", "VAE: tiny"))]
    if text_encoder_path:
        with torch.no_grad():
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
    latents = _sample(models, avatar_latents, cond, uncond, steps, guidance, seed, dev, progress)
    decode = models.decode_video if models.real_vae else latent_preview
    with torch.no_grad():
        generated = decode(latents)
        avatar = decode(avatar_latents)
    if not models.real_vae:
        notes.append("frames are a false-colour latent preview (no VAE); pass --vae to decode them")
    video, strip = write_outputs(Path(out_dir), str(data["name"]), [avatar, generated])
    return DemoResult(video, strip, generated.shape[0], SAMPLE_FPS, notes)
