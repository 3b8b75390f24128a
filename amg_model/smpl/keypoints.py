"""2D body keypoints: OpenPose/DWPose ``POSE_KEYPOINT`` parsing and COCO-18 <-> SMPL correspondences.

Keypoint tensors are [F, P, 18, 3] (frames, person slots, COCO-18 joints, (x, y, confidence)) in
pixels of the source image; an empty slot or an undetected joint has confidence 0.

COCO-18 order (OpenPose): nose, neck, r-shoulder, r-elbow, r-wrist, l-shoulder, l-elbow, l-wrist,
r-hip, r-knee, r-ankle, l-hip, l-knee, l-ankle, r-eye, l-eye, r-ear, l-ear.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from amg_model.errors import MotionError

COCO18_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip

# Index of each COCO-18 joint's mirror image (left <-> right).
COCO18_MIRROR: tuple[int, ...] = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)

# OpenPose BODY_25 index of each COCO-18 joint (BODY_25 adds mid-hip and six foot points).
BODY25_TO_COCO18: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

# Sources of the COCO-18 joints among the 24 SMPL joints followed by the body model's 5 face
# landmarks (nose, right eye, left eye, right ear, left ear), as (index, weight) pairs.
# The neck is the midpoint of the SMPL shoulders (OpenPose puts it between the shoulders, lower
# than the SMPL neck joint).
COCO18_SOURCES: tuple[tuple[tuple[int, float], ...], ...] = (
    ((24, 1.0),),  # nose
    ((16, 0.5), (17, 0.5)),  # neck
    ((17, 1.0),), ((19, 1.0),), ((21, 1.0),),  # right shoulder, elbow, wrist
    ((16, 1.0),), ((18, 1.0),), ((20, 1.0),),  # left shoulder, elbow, wrist
    ((2, 1.0),), ((5, 1.0),), ((8, 1.0),),  # right hip, knee, ankle
    ((1, 1.0),), ((4, 1.0),), ((7, 1.0),),  # left hip, knee, ankle
    ((25, 1.0),), ((26, 1.0),), ((27, 1.0),), ((28, 1.0),),  # right eye, left eye, right ear, left ear
)  # fmt: skip

# Relative trust of each COCO-18 joint when fitting SMPL. OpenPose hips sit lower and wider than
# the SMPL hip joints (they mark the hip surface, SMPL the joint centre), so they count less; the
# neck is a derived point.
COCO18_FIT_WEIGHTS: tuple[float, ...] = (
    1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.4, 1.0, 1.0, 0.4, 1.0, 1.0, 0.7, 0.7, 0.5, 0.5,
)  # fmt: skip


def coco18_regressor(dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """[18, 29] matrix mapping 24 SMPL joints + 5 face landmarks to the COCO-18 joints."""
    m = torch.zeros(18, 29, dtype=dtype, device=device)
    for i, sources in enumerate(COCO18_SOURCES):
        for j, w in sources:
            m[i, j] = w
    return m


def smpl_to_coco18(joints: torch.Tensor, face_landmarks: torch.Tensor) -> torch.Tensor:
    """COCO-18 points of posed bodies.

    Args:
        joints: [..., 24, 3] SMPL joints.
        face_landmarks: [..., 5, 3] nose, right eye, left eye, right ear, left ear.

    Returns:
        [..., 18, 3] points in COCO-18 order (same frame as the inputs).
    """
    points = torch.cat([joints, face_landmarks], dim=-2)
    return coco18_regressor(points.dtype, points.device) @ points


def _person_array(person: dict, frame: int) -> list[float]:
    values = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
    if values is None:
        raise MotionError(f"Keypoints frame {frame}: a person has no 'pose_keypoints_2d' list.")
    values = list(values)
    if len(values) == 54:
        return values
    if len(values) == 75:  # BODY_25
        return [values[3 * j + k] for j in BODY25_TO_COCO18 for k in range(3)]
    raise MotionError(
        f"Keypoints frame {frame}: a person has {len(values)} pose values; expected 54 "
        "(18 COCO joints x (x, y, confidence)) or 75 (OpenPose BODY_25)."
    )


def parse_pose_keypoints(
    frames: Sequence[dict] | torch.Tensor,
    image_size: tuple[int, int] | None = None,
    normalized: bool | None = None,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Read POSE_KEYPOINT frames (OpenPose JSON style) into one pixel-space tensor.

    Coordinates may be pixels or normalised to 0..1 (comfyui_controlnet_aux writes normalised
    values, other tools pixels). With ``normalized=None`` they are taken as normalised when every
    detected coordinate is <= 1 and the canvas is larger than 2 x 2 pixels.

    Args:
        frames: a list with one dict per frame, ``{"people": [{"pose_keypoints_2d": [x, y, c] * 18}],
            "canvas_width": W, "canvas_height": H}``, or a tensor [F, P, 18, 3].
        image_size: (W, H) in pixels; overrides the canvas size of the frames. Required when no
            frame states a canvas (e.g. tensor input) and the coordinates are normalised.
        normalized: force the coordinate interpretation instead of detecting it.

    Returns:
        keypoints [F, P, 18, 3] float32 (x, y in pixels, confidence), P = most people in a frame
        (at least 1; empty slots have confidence 0), and the image size (W, H).
    """
    if isinstance(frames, torch.Tensor):
        kp = frames.detach().to(torch.float32)
        if kp.ndim != 4 or kp.shape[-2:] != (18, 3):
            raise MotionError(
                f"Keypoint tensor has shape {tuple(kp.shape)}; expected [frames, people, 18, 3]."
            )
        canvas = image_size
    else:
        if isinstance(frames, dict):
            frames = [frames]
        if not isinstance(frames, Sequence):
            raise MotionError("Keypoints must be a list of POSE_KEYPOINT frames or a [F, P, 18, 3] tensor.")
        canvas = image_size
        rows: list[list[list[float]]] = []
        for f, frame in enumerate(frames):
            if not isinstance(frame, dict):
                raise MotionError(
                    f"Keypoints frame {f} is a {type(frame).__name__}, not a POSE_KEYPOINT dict."
                )
            people = frame.get("people") or []
            rows.append([_person_array(p, f) for p in people])
            if canvas is None and frame.get("canvas_width") and frame.get("canvas_height"):
                canvas = (int(frame["canvas_width"]), int(frame["canvas_height"]))
        num_people = max((len(r) for r in rows), default=0)
        kp = torch.zeros(len(rows), max(num_people, 1), 18, 3)
        for f, r in enumerate(rows):
            if r:
                kp[f, : len(r)] = torch.tensor(r, dtype=torch.float32).view(len(r), 18, 3)
    if kp.shape[0] == 0:
        raise MotionError("Keypoints have no frames; give at least one frame with a detected person.")
    if not torch.isfinite(kp).all():
        raise MotionError("Keypoints contain NaN or infinite values; replace them by zeros (undetected).")
    kp = kp.clone()
    kp[..., 2] = kp[..., 2].clamp(min=0.0)
    detected = kp[..., 2] > 0
    if not detected.any():
        raise MotionError("Keypoints have no detected joint in any frame (all confidences are zero).")
    coords = kp[..., :2][detected]
    if normalized is None:
        big_canvas = canvas is not None and min(canvas) > 2
        normalized = bool(coords.abs().max() <= 1.0 + 1e-6) and (big_canvas or canvas is None)
    if canvas is None:
        if normalized:
            raise MotionError(
                "Keypoints are normalised to 0..1 but no canvas size is known; pass image_size."
            )
        w = int(math.ceil(float(coords[:, 0].max()) + 1))
        h = int(math.ceil(float(coords[:, 1].max()) + 1))
        canvas = (w, h)
    if canvas[0] <= 0 or canvas[1] <= 0:
        raise MotionError(f"Keypoint canvas size {canvas[0]}x{canvas[1]} is invalid; both must be positive.")
    if normalized:
        kp[..., 0] *= canvas[0]
        kp[..., 1] *= canvas[1]
    kp[~detected] = 0.0
    return kp, (int(canvas[0]), int(canvas[1]))
