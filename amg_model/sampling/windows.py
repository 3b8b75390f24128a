"""Overlapping temporal windows and their blend weights, for clips longer than the model's 16 frames."""

from __future__ import annotations

import math

import torch

from amg_model.errors import SamplingError


def temporal_windows(num_frames: int, window: int = 16, overlap: int = 4) -> list[tuple[int, int]]:
    """Frame ranges that cover a clip with overlapping windows.

    Windows start every ``window - overlap`` frames; the last one is aligned to the end of the clip (so
    it may overlap its neighbour by more than ``overlap``). A clip of at most ``window`` frames is one
    window.

    Returns:
        ``[(start, stop), ...]`` half-open frame ranges, increasing, each ``window`` frames long
        (``num_frames`` when the clip is shorter).
    """
    if num_frames < 1:
        raise SamplingError(f"num_frames={num_frames}: a clip needs at least one frame.")
    if window < 1 or not 0 <= overlap < window:
        raise SamplingError(
            f"window={window}, overlap={overlap}: need window >= 1 and 0 <= overlap < window."
        )
    if num_frames <= window:
        return [(0, num_frames)]
    stride = window - overlap
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] != num_frames - window:
        starts.append(num_frames - window)
    return [(s, s + window) for s in starts]


def _ramp(length: int) -> torch.Tensor:
    """Raised-cosine ramp rising from near 0 to near 1 over ``length`` frames, float64 ``[length]``."""
    k = torch.arange(1, length + 1, dtype=torch.float64)
    return torch.sin(0.5 * math.pi * k / (length + 1)) ** 2


def blend_weights(windows: list[tuple[int, int]], num_frames: int) -> list[torch.Tensor]:
    """Per-frame weights of each window; at every frame the weights of the windows covering it sum to 1.

    Each window fades in over the frames it shares with the previous window and out over those it
    shares with the next one (raised cosine); the clip's first and last frames get full weight from
    their only window. Weights are normalised frame by frame.

    Returns:
        One float64 tensor ``[stop - start]`` per window.
    """
    raw = []
    for i, (start, stop) in enumerate(windows):
        w = torch.ones(stop - start, dtype=torch.float64)
        if i > 0:
            shared = max(windows[i - 1][1] - start, 0)
            if shared:
                w[:shared] = _ramp(shared)
        if i + 1 < len(windows):
            shared = max(stop - windows[i + 1][0], 0)
            if shared:
                w[-shared:] = torch.minimum(w[-shared:], _ramp(shared).flip(0))
        raw.append(w)
    total = torch.zeros(num_frames, dtype=torch.float64)
    for (start, stop), w in zip(windows, raw, strict=True):
        total[start:stop] += w
    if bool((total <= 0).any()):
        raise SamplingError(f"windows {windows} leave some of the {num_frames} frames uncovered.")
    return [w / total[start:stop] for (start, stop), w in zip(windows, raw, strict=True)]


WINDOW_SCHEDULES = ("overlap", "shifted")


def shifted_windows(num_frames: int, window: int = 16, offset: int = 0) -> list[tuple[int, int]]:
    """Frame ranges that tile a clip without overlap, the window boundaries moved by ``offset`` frames.

    Windows are ``window`` frames long and start at ``offset + k * window``; the pieces left at the
    start (``offset`` frames) and the end of the clip are shorter windows of their own. Every frame is
    in exactly one window, so the UNet computes each frame once per step; changing ``offset`` from step
    to step moves the seams between windows, so no frame stays at a window edge for the whole
    denoising.

    Returns:
        ``[(start, stop), ...]`` half-open frame ranges, increasing, covering ``[0, num_frames)`` once.
    """
    if num_frames < 1:
        raise SamplingError(f"num_frames={num_frames}: a clip needs at least one frame.")
    if window < 1:
        raise SamplingError(f"window={window}: need window >= 1.")
    if num_frames <= window:
        return [(0, num_frames)]
    offset %= window
    bounds = [0, *range(offset or window, num_frames, window), num_frames]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def step_windows(
    num_frames: int, window: int, overlap: int, schedule: str, step: int
) -> tuple[list[tuple[int, int]], list[torch.Tensor]]:
    """The windows and blend weights that one sampling step uses.

    ``"overlap"``: the same overlapping windows at every step (:func:`temporal_windows`, blended with
    :func:`blend_weights`). ``"shifted"``: non-overlapping windows whose boundaries move by half a
    window every other step (:func:`shifted_windows` with offset ``(step % 2) * (window // 2)``), each
    with weight 1.

    Returns:
        ``(windows, weights)``: half-open frame ranges and one float64 weight tensor per window.
    """
    if schedule == "overlap":
        windows = temporal_windows(num_frames, window, overlap)
        return windows, blend_weights(windows, num_frames)
    if schedule == "shifted":
        windows = shifted_windows(num_frames, window, (step % 2) * (window // 2))
        return windows, [torch.ones(b - a, dtype=torch.float64) for a, b in windows]
    raise SamplingError(f"window_schedule={schedule!r} is unknown; use one of {WINDOW_SCHEDULES}.")
