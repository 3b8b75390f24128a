"""The AMG sampling loop: DDIM with text guidance on an avatar-conditioned video UNet."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from amg_model.errors import SamplingError
from amg_model.sampling.ddim import ddim_step
from amg_model.sampling.guidance import UNetFn, guided_eps
from amg_model.sampling.schedule import ddim_alpha_pairs, ddim_timesteps
from amg_model.sampling.step import ddim_coefficient_table, guided_ddim_step
from amg_model.sampling.windows import WINDOW_SCHEDULES, step_windows

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, int, int, torch.Tensor, torch.Tensor], None]
"""``(step_index, total_steps, t, x_t, x0_pred) -> None``; raise from it to cancel sampling."""


def _model_dtype(unet: UNetFn, fallback: torch.dtype) -> torch.dtype:
    dtype = getattr(unet, "dtype", None)  # FastUNet and other wrappers that say their input dtype
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(unet, torch.nn.Module):
        for p in unet.parameters():
            if p.is_floating_point():
                return p.dtype
    return fallback


# Activation memory of one 16-frame window at batch 2 (guidance), 32x32 latent, fp16, beyond the
# weights: about 0.7 GiB measured on the real UNet (bench/RESULTS.md: 3.33 GiB peak, 2.63 GiB weights).
_WINDOW_GIB_PER_LATENT_FRAME_PIXEL = 0.7 / (2 * 16 * 32 * 32)


def auto_window_batch(
    num_windows: int, batch: int, window: int, latent_hw: tuple[int, int], device: torch.device, guided: bool
) -> int:
    """How many windows to denoise in one UNet call: 1 on the CPU, on CUDA as many as free memory allows.

    The estimate uses 60 % of the free device memory and the measured activation memory of the AMG UNet
    (scaled by frames, latent pixels and batch), so it errs on the side of fewer windows per call.
    """
    if device.type != "cuda" or num_windows <= 1:
        return 1
    free_bytes, _ = torch.cuda.mem_get_info(device)
    pixels = batch * (2 if guided else 1) * window * latent_hw[0] * latent_hw[1]
    per_window = _WINDOW_GIB_PER_LATENT_FRAME_PIXEL * 2**30 * pixels
    return int(max(1, min(num_windows, (0.6 * free_bytes) // per_window)))


def _check_inputs(avatar_latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor) -> None:
    if avatar_latents.ndim != 5:
        raise SamplingError(
            f"avatar_latents has shape {tuple(avatar_latents.shape)}; expected [B, 4, F, h, w] "
            "(frames on dim 2)."
        )
    batch = avatar_latents.shape[0]
    for name, c in (("cond", cond), ("uncond", uncond)):
        if c.ndim != 3 or c.shape[0] not in (1, batch):
            raise SamplingError(
                f"{name} has shape {tuple(c.shape)}; expected [B, 77, D] or [1, 77, D] with B = {batch}."
            )
    if cond.shape[1:] != uncond.shape[1:]:
        raise SamplingError(
            f"cond {tuple(cond.shape)} and uncond {tuple(uncond.shape)} differ in tokens or width; "
            "encode both with the same text encoder."
        )


def sample_video(
    unet: UNetFn,
    avatar_latents: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    steps: int = 20,
    guidance: float = 3.0,
    eta: float = 0.0,
    seed: int | None = None,
    noise: torch.Tensor | None = None,
    callback: StepCallback | None = None,
    window: int = 16,
    overlap: int = 4,
    spacing: str = "original",
    model_dtype: torch.dtype | None = None,
    window_batch: int | None = None,
    window_schedule: str = "overlap",
) -> torch.Tensor:
    """Generate video latents that follow an avatar render, as the original AMG demos do.

    DDIM on the linear_sd schedule with epsilon prediction, no clipping, the last step landing on
    ``alpha_bar[0]``; 20 steps visit timesteps ``[951, 901, ..., 1]``. Each step makes one UNet call of
    batch ``2B`` (negative and prompt) on ``[x_t | avatar]`` and combines
    ``eps_u + guidance * (eps_c - eps_u)``. Clips longer than ``window`` frames are denoised window by
    window at every step (overlapping by ``overlap`` frames, eps blended with smooth weights), so memory
    stays that of one window. With ``eta = 0`` and a UNet that graphs whole functions
    (:meth:`~amg_model.model.fast.FastUNet.graphed`), each one-window step is one call of
    :func:`~amg_model.sampling.step.guided_ddim_step` (one CUDA graph in mode "cuda_graph").

    Args:
        unet: ``(x [N, 8, F', h, w], t [N] long, context [N, 77, D]) -> eps [N, 4, F', h, w]``.
        avatar_latents: ``[B, 4, F, h, w]`` VAE latents of the avatar render (scaled by 0.18215). The
            result has its shape, device and (at least float32) dtype.
        cond: ``[B, 77, D]`` or ``[1, 77, D]`` prompt embedding.
        uncond: same shape, negative embedding (the empty prompt in the original).
        steps: DDIM steps (see :func:`~amg_model.sampling.schedule.ddim_timesteps` for ``spacing``).
        guidance: classifier-free guidance scale (3.0 in the original; 1.0 skips the negative branch).
        eta: 0 for deterministic DDIM; > 0 adds noise drawn from the seeded generator.
        seed: seeds a CPU ``torch.Generator`` for the initial noise and the eta noise, so a seed gives
            the same video on any device; None draws a fresh seed.
        noise: ``[B, 4, F, h, w]`` initial noise; overrides the seeded draw.
        callback: called after each step as ``callback(i, total, t, x_t, x0_pred)`` with the step index
            ``i`` (0-based), the number of steps, the timestep, the latent that was denoised and the
            predicted clean latent; an exception raised in it stops sampling and propagates.
        window: frames per UNet call (16, the model's training length).
        overlap: frames shared by neighbouring windows.
        spacing: ``"original"`` (as the original code and ComfyUI's ddim_uniform) or ``"leading"``.
        model_dtype: dtype of the UNet inputs; default: the UNet's ``dtype`` attribute (as
            :class:`~amg_model.model.fast.FastUNet` has) or that of its parameters.
        window_batch: windows denoised together in one UNet call (stacked along the batch), which
            costs the memory of that many windows and saves per-call overhead; default: 1 on the CPU,
            on CUDA as many as about 60 % of the free memory holds (see :func:`auto_window_batch`).
        window_schedule: ``"overlap"`` (windows overlapping by ``overlap`` frames, eps blended) or
            ``"shifted"`` (windows of ``window`` frames without overlap whose seams move by half a
            window every other step: each frame is computed once per step, ``overlap`` is unused).

    Returns:
        ``[B, 4, F, h, w]`` clean latent (still scaled by 0.18215; divide before VAE decoding).
    """
    _check_inputs(avatar_latents, cond, uncond)
    if guidance < 0:
        raise SamplingError(f"guidance={guidance} is negative; use 1 (none) to about 10, 3 in the original.")
    timesteps = ddim_timesteps(steps, spacing=spacing)
    alpha_pairs = ddim_alpha_pairs(timesteps)
    shape = (avatar_latents.shape[0], 4, *avatar_latents.shape[2:])
    device = avatar_latents.device
    dtype = torch.promote_types(avatar_latents.dtype, torch.float32)
    model_dtype = model_dtype or _model_dtype(unet, dtype)

    generator = torch.Generator(device="cpu")
    if seed is None:
        seed = generator.seed()
        logger.debug("sample_video: no seed given, drew %d", seed)
    else:
        generator.manual_seed(seed)
    if noise is None:
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    elif tuple(noise.shape) != shape:
        raise SamplingError(f"noise has shape {tuple(noise.shape)}; it must match the latent shape {shape}.")
    x = noise.to(device=device, dtype=dtype)
    avatar = avatar_latents.to(dtype)

    if window_schedule not in WINDOW_SCHEDULES:
        raise SamplingError(f"window_schedule={window_schedule!r} is unknown; use one of {WINDOW_SCHEDULES}.")
    if window_batch is not None and window_batch < 1:
        raise SamplingError(f"window_batch={window_batch}: use at least 1 window per UNet call.")
    schedules: dict[int, tuple[list[tuple[int, int]], list[torch.Tensor]]] = {}

    def windows_at(step: int) -> tuple[list[tuple[int, int]], list[torch.Tensor]]:
        key = step % 2 if window_schedule == "shifted" else 0
        if key not in schedules:
            wins, ws = step_windows(shape[2], window, overlap, window_schedule, step)
            schedules[key] = (wins, [w.to(device, dtype).view(1, 1, -1, 1, 1) for w in ws])
        return schedules[key]

    first = windows_at(0)[0]
    if window_batch is None:
        window_batch = auto_window_batch(
            len(first), shape[0], min(window, shape[2]), tuple(shape[3:]), device, guidance != 1.0
        )
    if len(first) > 1:
        logger.info(
            "sample_video: %d frames in %d windows of %d (%s), %d per UNet call",
            shape[2],
            len(first),
            window,
            window_schedule,
            window_batch,
        )

    def predict(t: int, step: int) -> torch.Tensor:
        windows, weights = windows_at(step)
        if len(windows) == 1:
            return guided_eps(unet, x, avatar, t, cond, uncond, guidance, model_dtype)
        eps = torch.zeros_like(x)
        for group in _window_groups(windows, window_batch):
            k, b = len(group), shape[0]
            xs = torch.cat([x[:, :, windows[j][0] : windows[j][1]] for j in group])
            avs = torch.cat([avatar[:, :, windows[j][0] : windows[j][1]] for j in group])
            c = cond.expand(b, -1, -1).repeat(k, 1, 1)
            u = uncond.expand(b, -1, -1).repeat(k, 1, 1)
            eps_k = guided_eps(unet, xs, avs, t, c, u, guidance, model_dtype)
            for j, eps_w in zip(group, eps_k.split(b), strict=True):
                start, stop = windows[j]
                eps[:, :, start:stop] += weights[j] * eps_w
        return eps

    # a UNet that graphs whole functions (FastUNet) runs each one-window deterministic step as one
    # graph; the step's inputs are device tensors made here once
    graphs_functions = getattr(unet, "graphed", None)
    graphed_step = graphs_functions(guided_ddim_step) if graphs_functions is not None and eta == 0 else None
    if graphed_step is not None:
        coefficient_table = ddim_coefficient_table(alpha_pairs, device, dtype)
        timestep_table = torch.tensor(timesteps, dtype=torch.long).to(device)
        cond_in, uncond_in = (c.to(device=device, dtype=model_dtype) for c in (cond, uncond))

    with torch.no_grad():
        for i, (t, (alpha_t, alpha_prev)) in enumerate(zip(timesteps, alpha_pairs, strict=True)):
            if graphed_step is not None and len(windows_at(i)[0]) == 1:
                x_prev, x0 = graphed_step(
                    x, avatar, timestep_table[i : i + 1], cond_in, uncond_in, coefficient_table[i],
                    guidance=guidance, model_dtype=model_dtype,
                )  # fmt: skip
            else:
                eps = predict(t, i)
                step_noise = None
                if eta > 0:
                    step_noise = torch.randn(shape, generator=generator, dtype=torch.float32)
                    step_noise = step_noise.to(device, dtype)
                x_prev, x0 = ddim_step(x, eps, alpha_t, alpha_prev, eta, step_noise)
            if callback is not None:
                callback(i, len(timesteps), t, x, x0)
            x = x_prev
    return x


def _window_groups(windows: list[tuple[int, int]], window_batch: int) -> list[list[int]]:
    """Indices of windows to run together: equal lengths only, at most ``window_batch`` per group.

    Groups of one length are balanced (for 5 windows and a batch of 4: 3 + 2, not 4 + 1).
    """
    by_length: dict[int, list[int]] = {}
    for j, (start, stop) in enumerate(windows):
        by_length.setdefault(stop - start, []).append(j)
    groups = []
    for idx in by_length.values():
        n = -(-len(idx) // window_batch)
        size = -(-len(idx) // n)
        groups += [idx[i : i + size] for i in range(0, len(idx), size)]
    return groups
