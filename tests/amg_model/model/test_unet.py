"""AMGUNet wrapper and UNetConfig: forward contract, strict building, config serialisation."""

import dataclasses

import pytest
import torch

from amg_model.errors import AMGError, CheckpointError
from amg_model.model.config import UNetConfig
from amg_model.model.tiny import random_diffusers_state_dict, tiny_unet, tiny_unet_config
from amg_model.model.unet import build_unet, expected_shapes


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(seed=0)


def test_forward_contract(unet):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 3, 8, 8, generator=gen)
    ctx = torch.randn(2, 77, unet.context_dim, generator=gen)
    with torch.no_grad():
        eps = unet(x, torch.tensor([10, 900]), ctx)
        # the batch is independent: each sample alone gives the same result
        first = unet(x[:1], torch.tensor([10]), ctx[:1])
        # all inputs matter: avatar channels, timestep and text
        avatar = unet(torch.cat([x[:1, :4], torch.zeros_like(x[:1, 4:])], 1), torch.tensor([10]), ctx[:1])
        later = unet(x[:1], torch.tensor([500]), ctx[:1])
        other_text = unet(x[:1], torch.tensor([10]), ctx[1:])
    assert eps.shape == (2, 4, 3, 8, 8)
    assert unet.in_channels == 8 and unet.context_dim == tiny_unet_config().cross_attention_dim
    assert torch.allclose(eps[:1], first, atol=1e-5)
    for changed in (avatar, later, other_text):
        assert (changed - first).abs().max() > 1e-3


def test_frames_interact_through_temporal_layers(unet):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 8, 4, 8, 8, generator=gen)
    ctx = torch.randn(1, 77, unet.context_dim, generator=gen)
    y = x.clone()
    y[:, :, -1] += 1.0
    with torch.no_grad():
        a, b = unet(x, torch.tensor([100]), ctx), unet(y, torch.tensor([100]), ctx)
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-4


def test_forward_rejects_wrong_shapes(unet):
    with pytest.raises(AMGError, match=r"expected \[B, 8, F, h, w\]"):
        unet(torch.zeros(1, 4, 2, 8, 8), torch.tensor([1]), torch.zeros(1, 77, unet.context_dim))
    with pytest.raises(AMGError, match="context has shape"):
        unet(torch.zeros(1, 8, 2, 8, 8), torch.tensor([1]), torch.zeros(1, 77, unet.context_dim + 1))


def test_build_is_strict_and_casts():
    config = tiny_unet_config()
    sd = random_diffusers_state_dict(config, seed=2)
    model = build_unet(config, sd, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert not any(p.requires_grad for p in model.parameters())
    assert torch.equal(model.unet.conv_in.weight, sd["conv_in.weight"].double())
    with pytest.raises(CheckpointError, match="1 missing"):
        build_unet(config, {k: v for k, v in sd.items() if k != "conv_out.bias"})


def test_config_json_round_trip_and_validation():
    config = dataclasses.replace(tiny_unet_config(), attention_levels=(False, True))
    assert UNetConfig.from_json(config.to_json()) == config
    assert expected_shapes(UNetConfig())["conv_in.weight"] == (320, 8, 3, 3)
    with pytest.raises(CheckpointError, match="not a multiple"):
        UNetConfig(block_out_channels=(40, 80), attention_levels=(True, False), attention_head_dim=8)
    with pytest.raises(CheckpointError, match="one flag per level"):
        UNetConfig(block_out_channels=(32, 64), attention_levels=(True,))
    with pytest.raises(CheckpointError, match="not valid"):
        UNetConfig.from_json('{"block_out_channels": [32], "wrong": 1}')
