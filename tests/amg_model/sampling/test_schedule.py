import math

import pytest

from amg_model.errors import SamplingError
from amg_model.sampling.schedule import alphas_cumprod, ddim_alpha_pairs, ddim_timesteps, linear_sd_betas


def comfy_ddim_uniform_timesteps(steps: int, total: int = 1000) -> list[int]:
    """Timestep indices that ComfyUI's ddim_uniform scheduler visits (its loop, re-written here)."""
    stride = max(total // steps, 1)
    x, out = 1, []
    while x < total:
        out.append(x)
        x += stride
    return out[::-1]


def test_linear_sd_schedule_values():
    betas = linear_sd_betas()
    assert betas.shape == (1000,)
    assert math.isclose(float(betas[0]), 0.00085, rel_tol=1e-12)
    assert math.isclose(float(betas[-1]), 0.012, rel_tol=1e-12)
    ab = alphas_cumprod()
    assert math.isclose(float(ab[0]), 0.99915, rel_tol=1e-12)
    ref = 1.0
    for i in range(1000):
        ref *= 1.0 - (math.sqrt(0.00085) + i * (math.sqrt(0.012) - math.sqrt(0.00085)) / 999) ** 2
    assert math.isclose(float(ab[-1]), ref, rel_tol=1e-9)


def test_twenty_steps_match_original():
    assert ddim_timesteps(20) == list(range(951, 0, -50))
    assert ddim_timesteps(20, spacing="leading") == list(range(951, 0, -50))


@pytest.mark.parametrize("steps", [1, 7, 10, 20, 25, 30, 50, 100, 333, 999])
def test_original_spacing_matches_comfy_ddim_uniform(steps):
    assert ddim_timesteps(steps) == comfy_ddim_uniform_timesteps(steps)


def test_leading_spacing_gives_exact_count():
    ts = ddim_timesteps(30, spacing="leading")
    assert len(ts) == 30 and ts[-1] == 1 and ts[0] == 1 + 33 * 29
    assert len(ddim_timesteps(30)) == 31


def test_last_step_goes_to_alpha_bar_zero():
    ab = alphas_cumprod()
    pairs = ddim_alpha_pairs(ddim_timesteps(20))
    assert pairs[0] == (float(ab[951]), float(ab[901]))
    assert pairs[-1] == (float(ab[1]), float(ab[0]))
    assert pairs[-1][1] < 1.0


@pytest.mark.parametrize("steps", [0, -1, 1000])
def test_bad_step_counts_raise(steps):
    with pytest.raises(SamplingError):
        ddim_timesteps(steps)
