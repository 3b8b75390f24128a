"""Batched and shifted temporal windows, and sampling through the FastUNet callable (CPU)."""

import copy

import pytest
import torch

from amg_model.model.fast import FastUNet
from amg_model.model.tiny import tiny_unet
from amg_model.sampling.sample import _window_groups, sample_video
from amg_model.sampling.windows import shifted_windows, step_windows

from .toys import FrameLocalToy

torch.set_num_threads(1)


def _inputs(frames, dim=8, batch=1, h=4):
    g = torch.Generator().manual_seed(1)
    avatar = torch.randn(batch, 4, frames, h, h, generator=g)
    cond = torch.randn(1, 5, dim, generator=g)
    uncond = torch.randn(1, 5, dim, generator=g)
    return avatar, cond, uncond


@pytest.mark.parametrize("frames", [1, 16, 17, 40, 64])
@pytest.mark.parametrize("offset", [0, 5, 8])
def test_shifted_windows_cover_every_frame_once(frames, offset):
    wins = shifted_windows(frames, 16, offset)
    covered = torch.zeros(frames, dtype=torch.long)
    for a, b in wins:
        assert 0 <= a < b <= frames and b - a <= 16
        covered[a:b] += 1
    assert bool((covered == 1).all())


def test_shifted_windows_of_64_frames():
    assert shifted_windows(64, 16, 0) == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert shifted_windows(64, 16, 8) == [(0, 8), (8, 24), (24, 40), (40, 56), (56, 64)]


@pytest.mark.parametrize("schedule", ["overlap", "shifted"])
@pytest.mark.parametrize("step", [0, 1])
def test_step_window_weights_sum_to_one(schedule, step):
    wins, weights = step_windows(64, 16, 4, schedule, step)
    total = torch.zeros(64, dtype=torch.float64)
    for (a, b), w in zip(wins, weights, strict=True):
        total[a:b] += w
    assert torch.allclose(total, torch.ones(64, dtype=torch.float64))


def test_window_groups_are_balanced_and_same_length():
    wins = [(0, 8), (8, 24), (24, 40), (40, 56), (56, 64)]
    groups = _window_groups(wins, 2)
    assert sorted(j for g in groups for j in g) == list(range(5))
    for g in groups:
        assert len({wins[j][1] - wins[j][0] for j in g}) == 1 and len(g) <= 2
    assert sorted(len(g) for g in _window_groups([(i, i + 16) for i in range(5)], 4)) == [2, 3]


@pytest.mark.parametrize("schedule", ["overlap", "shifted"])
@pytest.mark.parametrize("window_batch", [1, 3, 8])
def test_frame_local_model_windowed_equals_full_pass(schedule, window_batch):
    avatar, cond, uncond = _inputs(40, batch=2)
    full = sample_video(FrameLocalToy(), avatar, cond, uncond, steps=4, seed=0, window=64)
    toy = FrameLocalToy()
    out = sample_video(
        toy, avatar, cond, uncond, steps=4, seed=0, window_batch=window_batch, window_schedule=schedule
    )
    assert torch.allclose(out, full, atol=1e-5)
    assert max(toy.frames_seen) == 16


def test_batched_windows_equal_sequential_windows_on_a_real_unet():
    model = tiny_unet(seed=2).eval()
    avatar, cond, uncond = _inputs(24, dim=model.context_dim, h=8)
    for schedule in ("overlap", "shifted"):
        one = sample_video(
            model, avatar, cond, uncond, steps=2, seed=0, window=8, window_schedule=schedule, window_batch=1
        )
        many = sample_video(
            model, avatar, cond, uncond, steps=2, seed=0, window=8, window_schedule=schedule, window_batch=4
        )
        assert torch.allclose(one, many, atol=1e-4 * one.abs().max().item())


def test_sample_video_with_fast_unet_matches_module():
    model = tiny_unet(seed=2).eval()
    avatar, cond, uncond = _inputs(4, dim=model.context_dim, h=8)
    ref = sample_video(model, avatar, cond, uncond, steps=2, seed=0)
    fast = FastUNet(copy.deepcopy(model.unet), dtype=torch.float32, mode="eager")
    assert fast.dtype == torch.float32
    out = sample_video(fast, avatar, cond, uncond, steps=2, seed=0)
    assert torch.allclose(out, ref, atol=1e-5 * ref.abs().max().item())


def test_unknown_schedule_and_bad_window_batch_are_refused():
    from amg_model.errors import SamplingError

    avatar, cond, uncond = _inputs(20)
    with pytest.raises(SamplingError):
        sample_video(FrameLocalToy(), avatar, cond, uncond, steps=1, window_schedule="loop")
    with pytest.raises(SamplingError):
        sample_video(FrameLocalToy(), avatar, cond, uncond, steps=1, window_batch=0)


class _GraphingToy(FrameLocalToy):
    """A toy that graphs whole functions as FastUNet does (here: calls them), counting the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.graphed_calls = 0

    def graphed(self, fn):
        def call(*args, **options):
            self.graphed_calls += 1
            return fn(self, *args, **options)

        return call


@pytest.mark.parametrize(
    ("frames", "eta", "graphed_steps"), [(16, 0.0, 5), (12, 0.0, 5), (40, 0.0, 0), (16, 0.5, 0)]
)
def test_one_window_deterministic_steps_run_as_one_graphed_function(frames, eta, graphed_steps):
    """Each step of one window with eta 0 is one call of the UNet's ``graphed`` step (the tensors-only
    guided DDIM step), with the result and the callback's values of the step-by-step path."""
    avatar, cond, uncond = _inputs(frames, batch=2)
    seen = {}
    results = {}
    for name, toy in (("plain", FrameLocalToy()), ("graphing", _GraphingToy())):
        x0s = []
        results[name] = sample_video(
            toy, avatar, cond, uncond, steps=5, seed=3, eta=eta, callback=lambda *a, x0s=x0s: x0s.append(a[4])
        )
        seen[name] = (toy, x0s)
    assert seen["graphing"][0].graphed_calls == graphed_steps
    torch.testing.assert_close(results["graphing"], results["plain"], atol=1e-6, rtol=1e-5)
    for a, b in zip(seen["graphing"][1], seen["plain"][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
