"""Associate 2D pose detections across frames into person tracks.

Detections come as keypoints [F, P, 18, 3] (COCO-18, pixels, confidence) whose person slots are
in arbitrary order per frame. Tracks are built greedily, frame by frame: every (track, detection)
pair gets a cost (mean keypoint distance over joints seen in both, in units of the person's size)
and the cheapest pairs are matched first (for the few people of a video this equals the optimal
assignment in practice, and needs no solver). A person who leaves and comes back keeps the track
when the gap is at most ``max_gap`` frames and the new position is plausibly close to the last one;
otherwise they start a new track. There is no appearance model: people who cross closely may swap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from amg_model.errors import MotionError

logger = logging.getLogger(__name__)


@dataclass
class Tracks:
    """People tracked over F frames.

    Attributes:
        keypoints: [F, T, 18, 3] keypoints of each track (x, y pixels, confidence); frames where a
            track is not detected have confidence 0 (or low, after ``fill_missing``).
        visible: [F, T] True where the track was detected in the frame.
    """

    keypoints: torch.Tensor
    visible: torch.Tensor

    @property
    def num_tracks(self) -> int:
        return int(self.keypoints.shape[1])


def person_scale(points: np.ndarray, conf: np.ndarray) -> float:
    """Size of one detection in pixels: the diagonal of its confident keypoints' bounding box."""
    p = points[conf > 0]
    if len(p) < 2:
        return 1.0
    return max(float(np.linalg.norm(p.max(0) - p.min(0))), 1.0)


def _cost(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two detections [18, 3] in units of their size (inf if nothing in common)."""
    common = (a[:, 2] > 0) & (b[:, 2] > 0)
    scale = max(person_scale(a[:, :2], a[:, 2]), person_scale(b[:, :2], b[:, 2]))
    if common.sum() >= 2:
        return float(np.linalg.norm(a[common, :2] - b[common, :2], axis=1).mean()) / scale
    ca = a[a[:, 2] > 0, :2].mean(0)
    cb = b[b[:, 2] > 0, :2].mean(0)
    return float(np.linalg.norm(ca - cb)) / scale


def track_people(
    keypoints: torch.Tensor,
    min_confidence: float = 0.3,
    min_joints: int = 4,
    max_distance: float = 0.5,
    max_gap: int = 30,
    min_track_frames: int = 3,
) -> Tracks:
    """Link per-frame detections into tracks.

    Args:
        keypoints: [F, P, 18, 3] detections (pixels, confidence); joints below ``min_confidence``
            are ignored, and so are detections with fewer than ``min_joints`` confident joints.
        max_distance: largest matching cost (mean keypoint distance / person size) between
            consecutive frames; after a gap of g frames the limit grows to max_distance * (1 + g / 4).
        max_gap: most frames a track may go unseen and still be continued.
        min_track_frames: tracks detected in fewer frames are dropped as spurious (the longest
            track is always kept).

    Returns:
        Tracks ordered by first appearance; joints below ``min_confidence`` have confidence 0.
    """
    if keypoints.ndim != 4 or keypoints.shape[-2:] != (18, 3):
        raise MotionError(f"Keypoints have shape {tuple(keypoints.shape)}; expected [frames, people, 18, 3].")
    kp = keypoints.detach().cpu().to(torch.float64).numpy().copy()
    kp[kp[..., 2] < min_confidence] = 0.0
    num_frames = kp.shape[0]
    tracks: list[dict[int, np.ndarray]] = []  # frame -> [18, 3]
    for f in range(num_frames):
        dets = [kp[f, p] for p in range(kp.shape[1]) if (kp[f, p, :, 2] > 0).sum() >= min_joints]
        pairs = []
        for t, track in enumerate(tracks):
            last = max(track)
            gap = f - last
            if gap > max_gap + 1:
                continue
            limit = max_distance * (1.0 + (gap - 1) / 4.0)
            for d, det in enumerate(dets):
                c = _cost(track[last], det)
                if c <= limit:
                    pairs.append((c, t, d))
        used_t: set[int] = set()
        used_d: set[int] = set()
        for _, t, d in sorted(pairs):
            if t in used_t or d in used_d:
                continue
            tracks[t][f] = dets[d]
            used_t.add(t)
            used_d.add(d)
        for d, det in enumerate(dets):
            if d not in used_d:
                tracks.append({f: det})
    if not tracks:
        raise MotionError(
            f"No person has {min_joints} or more joints above confidence {min_confidence} in any frame; "
            "lower min_confidence or check the pose detector output."
        )
    keep = min(min_track_frames, max(len(t) for t in tracks))
    dropped = sum(len(t) < keep for t in tracks)
    if dropped:
        logger.info("Dropped %d tracks seen in fewer than %d frames.", dropped, keep)
    tracks = [t for t in tracks if len(t) >= keep]
    out = torch.zeros(num_frames, len(tracks), 18, 3, dtype=torch.float32)
    visible = torch.zeros(num_frames, len(tracks), dtype=torch.bool)
    for t, track in enumerate(tracks):
        for f, det in track.items():
            out[f, t] = torch.from_numpy(det).float()
            visible[f, t] = True
    return Tracks(out.to(keypoints.device), visible.to(keypoints.device))


def fill_missing(tracks: Tracks, fill_confidence: float = 0.1) -> Tracks:
    """Fill frames where a track is unseen, for fitting.

    Each joint is interpolated linearly in time between the nearest frames where it was seen, and
    held constant before the first and after the last sighting (the person stands still there).
    Filled joints get ``fill_confidence`` times the interpolated confidence, so that they guide
    the fit only weakly. Joints missing inside seen frames are left at confidence 0.

    Returns:
        Tracks with the same ``visible`` mask and filled keypoints.
    """
    kp = tracks.keypoints.detach().cpu().to(torch.float64).numpy().copy()
    vis = tracks.visible.cpu().numpy()
    frames = np.arange(kp.shape[0])
    for t in range(kp.shape[1]):
        missing = ~vis[:, t]
        if not missing.any():
            continue
        for j in range(18):
            seen = vis[:, t] & (kp[:, t, j, 2] > 0)
            if not seen.any():
                continue
            for k in range(3):
                kp[missing, t, j, k] = np.interp(frames[missing], frames[seen], kp[seen, t, j, k])
            kp[missing, t, j, 2] *= fill_confidence
    out = torch.from_numpy(kp).to(dtype=tracks.keypoints.dtype, device=tracks.keypoints.device)
    return Tracks(out, tracks.visible.clone())
