"""Guidance's batch: the same video with each text."""

import torch

from amg_model.sampling.guidance import equal_rows


def test_equal_rows_counts_a_batch_of_one_video_at_one_timestep():
    x = torch.randn(1, 8, 3, 4, 4)
    t = torch.tensor([500, 500, 500])
    assert equal_rows(torch.cat([x, x, x]), t) == 3
    assert equal_rows(x, t[:1]) == 1  # nothing to share
    other = x.clone()
    other[0, 7, 2, 3, 3] += 1e-3  # one value differs
    assert equal_rows(torch.cat([x, other, x]), t) == 1
    assert equal_rows(torch.cat([x, x, x]), torch.tensor([500, 499, 500])) == 1
    assert equal_rows(torch.cat([x, x]), torch.tensor([500])) == 1  # a shared scalar-like t is no proof
