import math

import pytest
import torch

from amg_model.errors import SamplingError
from amg_model.sampling.ddim import ddim_sigma, ddim_step


def test_eta_zero_step_matches_formula():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 2, 2, generator=gen, dtype=torch.float64)
    eps = torch.randn(2, 4, 3, 2, 2, generator=gen, dtype=torch.float64)
    a_t, a_prev = 0.3, 0.6
    x_prev, x0 = ddim_step(x, eps, a_t, a_prev)
    x0_ref = math.sqrt(1 / a_t) * x - math.sqrt(1 / a_t - 1) * eps
    torch.testing.assert_close(x0, x0_ref, rtol=0, atol=1e-13)
    ref = math.sqrt(a_prev) * x0_ref + math.sqrt(1 - a_prev) * eps
    torch.testing.assert_close(x_prev, ref, rtol=0, atol=1e-13)


def test_clean_latent_is_a_fixed_point_of_the_noise_free_path():
    x0 = torch.randn(1, 4, 2, 3, 3, dtype=torch.float64)
    eps = torch.randn_like(x0)
    a_t, a_prev = 0.2, 0.7
    x_t = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * eps
    x_prev, x0_pred = ddim_step(x_t, eps, a_t, a_prev)
    torch.testing.assert_close(x0_pred, x0)
    torch.testing.assert_close(x_prev, math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps)


def test_eta_sigma_and_noise_term():
    a_t, a_prev, eta = 0.25, 0.5, 0.7
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
    assert math.isclose(ddim_sigma(a_t, a_prev, eta), sigma, rel_tol=1e-14)
    x = torch.randn(1, 4, 1, 2, 2, dtype=torch.float64)
    eps = torch.randn_like(x)
    noise = torch.randn_like(x)
    x_prev, x0 = ddim_step(x, eps, a_t, a_prev, eta, noise)
    ref = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sigma**2) * eps + sigma * noise
    torch.testing.assert_close(x_prev, ref, rtol=0, atol=1e-13)
    with pytest.raises(SamplingError):
        ddim_step(x, eps, a_t, a_prev, eta)
