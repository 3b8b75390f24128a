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
