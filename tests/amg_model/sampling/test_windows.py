import pytest
import torch

from amg_model.errors import SamplingError
from amg_model.sampling.sample import sample_video
from amg_model.sampling.windows import blend_weights, temporal_windows

from .toys import FrameLocalToy


@pytest.mark.parametrize("frames", [1, 16, 17, 28, 40, 64, 65])
def test_windows_cover_every_frame_and_weights_sum_to_one(frames):
    windows = temporal_windows(frames, 16, 4)
    assert windows[0][0] == 0 and windows[-1][1] == frames
    assert all(stop - start == min(16, frames) for start, stop in windows)
    weights = blend_weights(windows, frames)
    total = torch.zeros(frames, dtype=torch.float64)
    for (start, stop), w in zip(windows, weights, strict=True):
        assert (w > 0).all()
        total[start:stop] += w
    torch.testing.assert_close(total, torch.ones(frames, dtype=torch.float64))


def test_window_stride_and_end_alignment():
    assert temporal_windows(16, 16, 4) == [(0, 16)]
    assert temporal_windows(28, 16, 4) == [(0, 16), (12, 28)]
    assert temporal_windows(30, 16, 4) == [(0, 16), (12, 28), (14, 30)]


def test_bad_window_arguments_raise():
    with pytest.raises(SamplingError):
        temporal_windows(20, 16, 16)
    with pytest.raises(SamplingError):
        temporal_windows(0, 16, 4)


def test_windowed_sampling_equals_full_for_frame_local_model():
    gen = torch.Generator().manual_seed(3)
    avatar = torch.randn(1, 4, 40, 2, 3, generator=gen, dtype=torch.float64)
    cond = torch.randn(1, 5, 6, generator=gen, dtype=torch.float64)
    uncond = torch.zeros(1, 5, 6, dtype=torch.float64)
    noise = torch.randn(1, 4, 40, 2, 3, generator=gen, dtype=torch.float64)
    windowed_toy = FrameLocalToy()
    windowed = sample_video(windowed_toy, avatar, cond, uncond, steps=5, noise=noise, window=16, overlap=4)
    full = sample_video(FrameLocalToy(), avatar, cond, uncond, steps=5, noise=noise, window=40)
    assert max(windowed_toy.frames_seen) == 16
    assert windowed_toy.calls == 5 * len(temporal_windows(40, 16, 4))
    torch.testing.assert_close(windowed, full, rtol=0, atol=1e-12)
