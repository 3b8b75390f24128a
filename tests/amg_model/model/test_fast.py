"""The fast execution modes compute the same function as the plain diffusers forward."""

import copy

import pytest
import torch

from amg_model.model.fast import FastUNet, use_fast_temporal_convs
from amg_model.model.tiny import tiny_unet
from amg_model.sampling.guidance import guided_eps


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(seed=3).unet.eval()


def _inputs(frames=5):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, frames, 16, 16, generator=g)
    t = torch.tensor([3, 700])
    ctx = torch.randn(2, 7, unet_context_dim(), generator=g)
    return x, t, ctx


def unet_context_dim():
    from amg_model.model.tiny import TINY_CONTEXT_DIM

    return TINY_CONTEXT_DIM


def test_fast_temporal_convs_match_diffusers(unet):
    x, t, ctx = _inputs()
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=ctx).sample
        fast = copy.deepcopy(unet)
        assert use_fast_temporal_convs(fast) > 0
        out = fast(x, t, encoder_hidden_states=ctx).sample
    assert (out - ref).abs().max() < 1e-4 * ref.abs().max()
    # parameters untouched: the state dict is the same
    assert fast.state_dict().keys() == unet.state_dict().keys()


def test_fast_temporal_convs_single_frame(unet):
    x, t, ctx = _inputs(frames=1)
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=ctx).sample
        fast = copy.deepcopy(unet)
        use_fast_temporal_convs(fast)
        out = fast(x, t, encoder_hidden_states=ctx).sample
    assert torch.allclose(out, ref, atol=1e-4 * ref.abs().max().item())


def test_fast_unet_eager_equals_the_plain_forward_under_guidance(unet):
    model = FastUNet(copy.deepcopy(unet), dtype=torch.float32, mode="eager")
    x, t, ctx = _inputs()
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(model(x, t, ctx), ref)
    avatar, xt = x[:1, 4:], x[:1, :4]
    guided = guided_eps(model, xt, avatar, 500, ctx[:1], ctx[1:], 3.0)
    e_c = model(torch.cat([xt, avatar], 1), torch.tensor([500]), ctx[:1])
    e_u = model(torch.cat([xt, avatar], 1), torch.tensor([500]), ctx[1:])
    torch.testing.assert_close(guided, e_u + 3.0 * (e_c - e_u), atol=1e-5, rtol=1e-5)


def test_unknown_mode_is_refused(unet):
    with pytest.raises(ValueError, match="unknown UNet execution mode"):
        FastUNet(copy.deepcopy(unet), mode="warp")
