"""Linking detections across frames into person tracks."""

import pytest
import torch

from amg_model.errors import MotionError
from amg_model.smpl.tracking import fill_missing, track_people


def _skeleton(cx: float, cy: float, size: float = 100.0) -> torch.Tensor:
    """A COCO-18 stick person [18, 3] centred at (cx, cy), all joints confident."""
    g = torch.Generator().manual_seed(0)
    offsets = (torch.rand(18, 2, generator=g) - 0.5) * size
    return torch.cat([offsets + torch.tensor([cx, cy]), torch.ones(18, 1)], dim=1)


def _two_walkers(frames: int) -> torch.Tensor:
    kp = torch.zeros(frames, 2, 18, 3)
    for f in range(frames):
        a, b = _skeleton(100 + 5 * f, 200), _skeleton(500 - 5 * f, 220)
        kp[f] = torch.stack([a, b] if f % 2 == 0 else [b, a])  # detection order changes each frame
    return kp


def test_tracks_follow_people_whatever_the_detection_order():
    tracks = track_people(_two_walkers(10))
    assert tracks.num_tracks == 2 and tracks.visible.all()
    x = tracks.keypoints[..., :2].mean(dim=2)[..., 0]  # [F, T] mean x of each track
    steps = x[1:] - x[:-1]
    # each track moves steadily one way: +5 px per frame or -5 px per frame, never a swap
    assert torch.allclose(steps.abs(), torch.full_like(steps, 5.0), atol=1e-4)
    assert (steps[:, 0].sign() == steps[0, 0].sign()).all() and (
        steps[:, 1].sign() == steps[0, 1].sign()
    ).all()


def test_person_leaving_and_returning_keeps_the_track_and_gaps_are_filled():
    kp = _two_walkers(12)
    a_slot = [0 if f % 2 == 0 else 1 for f in range(12)]
    for f in (4, 5, 6):  # the first walker is not detected for three frames
        kp[f, a_slot[f]] = 0.0
    tracks = track_people(kp)
    assert tracks.num_tracks == 2
    first = int(tracks.visible[4:7].sum(0).argmin())  # the track unseen in the gap
    assert not tracks.visible[4:7, first].any() and tracks.visible[:4, first].all()
    assert tracks.visible[7:, first].all()  # re-detected walker continues its own track
    filled = fill_missing(tracks)
    mid = filled.keypoints[5, first, :, :2].mean(0)
    expected = (tracks.keypoints[3, first, :, :2].mean(0) + tracks.keypoints[7, first, :, :2].mean(0)) / 2
    torch.testing.assert_close(mid, expected, atol=1e-3, rtol=0)  # linear interpolation over the gap
    assert 0 < float(filled.keypoints[5, first, 0, 2]) <= 0.1 + 1e-6  # filled joints guide the fit weakly


def test_far_jump_after_a_long_gap_starts_a_new_track():
    kp = torch.zeros(20, 1, 18, 3)
    for f in range(5):
        kp[f, 0] = _skeleton(100, 200)
    for f in range(15, 20):
        kp[f, 0] = _skeleton(900, 200)  # someone else, far away, much later
    tracks = track_people(kp, max_gap=5)
    assert tracks.num_tracks == 2


def test_low_confidence_detections_are_ignored():
    kp = _two_walkers(6)
    kp[:, :, :, 2] = 0.1  # below min_confidence everywhere but one person
    kp[:, 0, :, 2] = torch.where(torch.arange(6)[:, None] % 2 == 0, 0.9, 0.1)
    kp[:, 1, :, 2] = torch.where(torch.arange(6)[:, None] % 2 == 1, 0.9, 0.1)
    tracks = track_people(kp, min_confidence=0.3)
    assert tracks.num_tracks == 1  # only the first walker is ever confident


def test_wrong_shape_is_a_clear_error():
    with pytest.raises(MotionError, match="expected \\[frames, people, 18, 3\\]"):
        track_people(torch.zeros(4, 1, 25, 3))
