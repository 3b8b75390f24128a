"""The fast execution modes compute the same function as the plain diffusers forward."""

import contextlib
import copy

import pytest
import torch

from amg_model.model.fast import FastUNet
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


def test_channels_last_forward_equals_diffusers(unet):
    """The channels-last forward (own GroupNorm, temporal convs, shared cross-attention keys) is
    the diffusers function: batch 2, several frames, a size that is no multiple of 8."""
    from amg_model.model.channels_last import unet_forward

    for frames, size in ((5, (16, 16)), (1, (8, 8)), (3, (12, 20))):
        g = torch.Generator().manual_seed(frames)
        x = torch.randn(2, 8, frames, *size, generator=g)
        t = torch.tensor([3, 700])
        ctx = torch.randn(2, 7, unet_context_dim(), generator=g)
        with torch.no_grad():
            ref = unet(x, t, encoder_hidden_states=ctx).sample
            out = unet_forward(unet, x, t, ctx)
        assert out.shape == ref.shape
        assert (out - ref).norm() < 1e-5 * ref.norm(), (frames, size)


@contextlib.contextmanager
def _batches_into(conv: torch.nn.Conv2d):
    """The batch sizes ``conv`` computes while the block runs (the channels-last forward calls its
    ``_conv_forward`` directly, without the module's hooks)."""
    batches, inner = [], conv._conv_forward

    def counted(x, weight, bias):
        batches.append(x.shape[0])
        return inner(x, weight, bias)

    conv._conv_forward = counted
    try:
        yield batches
    finally:
        del conv._conv_forward


@pytest.mark.parametrize("attention_levels", [(True, False), (False, True)])
@pytest.mark.parametrize("fused_norms", [True, False])
def test_input_copies_share_the_layers_before_the_cross_attention(attention_levels, fused_norms):
    """With guidance's batch (the same video twice, two texts) the layers before the first
    cross-attention run once: same result as the whole batch, half the batch until then."""
    import dataclasses

    from amg_model.model.channels_last import unet_forward
    from amg_model.model.tiny import tiny_unet_config

    config = dataclasses.replace(tiny_unet_config(), attention_levels=attention_levels)
    model = tiny_unet(seed=5, config=config).unet.eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 3, 8, 12, generator=g)  # two different videos, each under two texts
    sample, t = torch.cat([x, x]), torch.tensor([40, 900, 40, 900])
    ctx = torch.randn(4, 7, unet_context_dim(), generator=g)
    with torch.no_grad(), _batches_into(model.conv_in) as conv_in_batch:
        ref = unet_forward(model, sample, t, ctx, fused_norms=fused_norms)
        out = unet_forward(model, sample, t, ctx, fused_norms=fused_norms, input_copies=2)
    with torch.no_grad():
        whole = model(sample, t, encoder_hidden_states=ctx).sample
    assert conv_in_batch == [4 * 3, 2 * 3]
    assert out.shape == ref.shape == (4, 4, 3, 8, 12)
    assert (out - ref).norm() < 1e-5 * ref.norm()
    assert (out - whole).norm() < 1e-5 * whole.norm()
    assert (out[:2] - out[2:]).norm() > 1e-3 * out.norm()  # the texts do make a difference
    with pytest.raises(ValueError, match="input_copies=3 does not divide"):
        unet_forward(model, sample, t, ctx, input_copies=3)


def test_fast_unet_channels_last_matches_the_plain_forward(unet):
    model = FastUNet(copy.deepcopy(unet), dtype=torch.float32, mode="eager", channels_last=True)
    assert all(
        m.weight.is_contiguous(memory_format=torch.channels_last)
        for m in model.unet.modules()
        if isinstance(m, torch.nn.Conv2d)
    )
    assert all(
        m.weight.is_contiguous(memory_format=torch.channels_last_3d)
        for m in model.unet.modules()
        if isinstance(m, torch.nn.Conv3d)
    )
    x, t, ctx = _inputs()
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(model(x, t, ctx), ref, atol=1e-5, rtol=1e-4)


def test_channels_last_group_norm_over_frames_equals_torch():
    from amg_model.model.channels_last import group_norm

    norm = torch.nn.GroupNorm(4, 16, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = (torch.randn(2 * 3, 16, 5, 7) * 3 + 2).contiguous(memory_format=torch.channels_last)
    # frames=3: statistics over [C/G, F, H, W] of each of the 2 videos, as GroupNorm on [B, C, F, H, W]
    ref = norm(x.reshape(2, 3, 16, 5, 7).transpose(1, 2)).transpose(1, 2).reshape(6, 16, 5, 7)
    out = group_norm(x, norm, frames=3)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(group_norm(x, norm, silu=True), torch.nn.functional.silu(norm(x)))


@pytest.mark.parametrize("shortcut_kernel", [1, 3])
def test_resnet_block_of_a_skip_concatenation_equals_diffusers(shortcut_kernel):
    """An up block's ResNet given its input as two parts (the skip connection not concatenated; a
    1x1 shortcut as two products, another shortcut on the concatenation) is diffusers' block on the
    concatenated input."""
    from diffusers.models.resnet import ResnetBlock2D

    from amg_model.model.channels_last import resnet_block_and_sums, to_channels_last

    torch.manual_seed(0)
    block = ResnetBlock2D(in_channels=48, out_channels=32, temb_channels=24, groups=8).eval()
    if shortcut_kernel != 1:
        block.conv_shortcut = torch.nn.Conv2d(48, 32, shortcut_kernel, padding=shortcut_kernel // 2)
    for p in block.parameters():
        p.data.normal_(0.0, 0.2)
    to_channels_last(block)
    cl = torch.channels_last
    x, skip = (
        torch.randn(6, 32, 5, 4).contiguous(memory_format=cl),
        torch.randn(6, 16, 5, 4).contiguous(memory_format=cl),
    )
    temb = torch.randn(2, 24)  # 2 videos of 3 frames
    with torch.no_grad():
        ref = block(torch.cat([x, skip], 1), temb.repeat_interleave(3, 0))
        out, _ = resnet_block_and_sums(block, x, torch.nn.functional.silu(temb), skip=skip)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_fused_projections_keep_the_function_and_the_state_dict(unet):
    from amg_model.model.channels_last import fuse_projections, unet_forward

    fused = copy.deepcopy(unet)
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    assert fuse_projections(fused) > 0
    after = fused.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    # the linear layers are views of the fused matrix: an in-place edit of one shows in the other
    attn = next(m for m in fused.modules() if hasattr(m, "amg_fused_weight"))
    storage = attn.amg_fused_weight.untyped_storage().data_ptr()
    assert attn.to_v.weight.untyped_storage().data_ptr() == storage
    x, t, ctx = _inputs()
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=ctx).sample
        out = unet_forward(fused, x, t, ctx)
    assert (out - ref).norm() < 1e-5 * ref.norm()


def test_fused_time_projections_keep_the_function_and_follow_edits(unet):
    """One product for every ResNet block's time projection: the same function, with and without
    guidance's input copies; the state dict is unchanged and in-place edits of a block's projection or
    conv1 bias reach the fused product."""
    from amg_model.model.channels_last import fuse_time_projections, unet_forward

    fused = copy.deepcopy(unet)
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    blocks = [m for m in fused.modules() if getattr(m, "time_emb_proj", None) is not None]
    assert fuse_time_projections(fused) == len(blocks) > 1
    after = fused.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    reference = copy.deepcopy(unet)
    for edit in (None, "conv1.bias", "time_emb_proj.weight"):
        if edit is not None:  # the same edit in place on both UNets
            for model in (fused, reference):
                block = [m for m in model.modules() if getattr(m, "time_emb_proj", None) is not None][-1]
                block.get_parameter(edit).data.add_(0.5)
        x, t, ctx = _inputs()  # two videos at two timesteps, each with two contexts (guidance's copies)
        x, t, ctx = torch.cat([x, x]), torch.cat([t, t]), torch.cat([ctx, ctx.flip(0)])
        with torch.no_grad():
            ref = reference(x, t, encoder_hidden_states=ctx).sample
            out = unet_forward(fused, x, t, ctx)
            copies = unet_forward(fused, x, t, ctx, input_copies=2)
        assert (out - ref).norm() < 1e-5 * ref.norm(), edit
        assert (copies - ref).norm() < 1e-5 * ref.norm(), edit


def test_graphed_forward_keeps_graphs_per_shape_and_drops_them_when_weights_move():
    from amg_model.model.fast import GraphedForward

    captured = []

    def capture(fn, args):  # stands in for a CUDA graph: records the capture, then calls fn
        captured.append(tuple(args[0].shape))
        return fn

    lin = torch.nn.Linear(8, 8)
    graphed = GraphedForward(lambda x: lin(x), lin, max_graphs=2, capture=capture)
    a, b, c = torch.randn(1, 8), torch.randn(2, 8), torch.randn(3, 8)
    with torch.no_grad():
        for x in (a, b, a, b):
            torch.testing.assert_close(graphed(x), lin(x))
        assert captured == [(1, 8), (2, 8)] and len(graphed) == 2
        graphed(c)  # a third shape evicts the least recently used one (a)
        graphed(b)
        graphed(a)
        assert captured == [(1, 8), (2, 8), (3, 8), (1, 8)] and len(graphed) == 2
        lin.weight = torch.nn.Parameter(torch.randn(8, 8))  # moved or replaced: every graph is stale
        torch.testing.assert_close(graphed(b), lin(b))
        assert captured[-1] == (2, 8) and len(graphed) == 1
        graphed.release()
        assert len(graphed) == 0


def test_graphed_forward_fixes_its_options_per_graph():
    from amg_model.model.fast import GraphedForward

    captured = []

    def capture(fn, args):
        captured.append(fn.keywords)
        return fn

    graphed = GraphedForward(lambda x, scale=1.0: x * scale, capture=capture)
    x = torch.ones(2)
    assert graphed(x).tolist() == [1.0, 1.0]
    assert graphed(x, scale=3.0).tolist() == [3.0, 3.0]  # another option: another graph
    assert graphed(x, scale=3.0).tolist() == [3.0, 3.0]
    assert captured == [{}, {"scale": 3.0}] and len(graphed) == 2


def test_guidance_runs_the_shared_layers_of_a_channels_last_fast_unet_once(unet):
    model = FastUNet(copy.deepcopy(unet), dtype=torch.float32, mode="eager", channels_last=True)
    x, _, ctx = _inputs()
    avatar, xt = x[:1, 4:], x[:1, :4]
    with _batches_into(model.unet.conv_in) as batches:
        guided = guided_eps(model, xt, avatar, 500, ctx[:1], ctx[1:], 3.0)
    assert batches == [5]  # one video of 5 frames, not the two copies guidance batches
    e_c = model(torch.cat([xt, avatar], 1), torch.tensor([500]), ctx[:1])
    e_u = model(torch.cat([xt, avatar], 1), torch.tensor([500]), ctx[1:])
    torch.testing.assert_close(guided, e_u + 3.0 * (e_c - e_u), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_graphed_forward_follows_replaced_and_edited_weights():
    from amg_model.model.fast import GraphedForward

    lin = torch.nn.Linear(8, 8).cuda()
    graphed = GraphedForward(lambda x: lin(x), lin)
    x = torch.randn(4, 8, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(graphed(x), lin(x))
        lin.weight = torch.nn.Parameter(torch.randn(8, 8, device="cuda"))  # replaced, as a patcher does
        torch.testing.assert_close(graphed(x), lin(x))
        lin.weight.mul_(2.0)  # edited in place: the graph reads the same memory
        torch.testing.assert_close(graphed(x), lin(x))
        assert len(graphed) == 1  # the graph of the replaced weight was dropped
        held = torch.cuda.memory_allocated()
        graphed.release()
        assert torch.cuda.memory_allocated() < held  # its output and pool went with it


def test_a_fast_unet_is_freed_as_soon_as_it_is_dropped(unet):
    """No reference cycle: the weights of a dropped FastUNet go without waiting for the garbage collector
    (which rarely runs while CUDA graphs replay: the loop makes almost no Python objects)."""
    import gc
    import weakref

    gc.disable()
    try:
        for mode in ("eager", "cuda_graph"):
            fast = FastUNet(copy.deepcopy(unet), dtype=torch.float32, mode=mode, channels_last=True)
            dropped = weakref.ref(fast)
            del fast
            assert dropped() is None, mode
    finally:
        gc.enable()


def test_channels_last_forward_traces_as_one_graph(unet):
    """The compile modes trace the channels-last forward: no graph breaks (``fullgraph``), same result.
    (``aot_eager`` traces as inductor does but runs the traced graph without generating code.)"""
    from amg_model.model.channels_last import unet_forward

    x, t, ctx = _inputs(frames=3)
    compiled = torch.compile(unet_forward, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(unet, x, t, ctx), unet_forward(unet, x, t, ctx))


def test_graphed_function_gets_the_fast_unet_and_is_made_once(unet):
    """Outside mode "cuda_graph" (or on CPU tensors), ``graphed(fn)`` calls ``fn`` with the UNet; in
    that mode the function's graphs are kept per function."""
    from amg_model.sampling.step import guided_ddim_step

    seen = []

    def fn(model, x, scale=1.0):
        seen.append(model)
        return x * scale

    eager = FastUNet(copy.deepcopy(unet), dtype=torch.float32, mode="eager", channels_last=True)
    assert eager.graphed(fn)(torch.ones(2), scale=2.0).tolist() == [2.0, 2.0] and seen == [eager]
    graphing = FastUNet(copy.deepcopy(unet), dtype=torch.float32, mode="cuda_graph", channels_last=True)
    step = graphing.graphed(guided_ddim_step)
    assert step.graphed is graphing.graphed(guided_ddim_step).graphed  # one set of graphs per function
    assert graphing.graphed(fn)(torch.ones(2)).tolist() == [1.0, 1.0]  # CPU tensors: called directly
    assert seen[-1] is not graphing and seen[-1].takes_input_copies  # the UNet without its graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_sampling_steps_replayed_as_graphs_equal_the_eager_steps(unet):
    from amg_model.sampling.sample import sample_video
    from amg_model.sampling.step import guided_ddim_step

    g = torch.Generator().manual_seed(5)
    avatar = torch.randn(1, 4, 6, 16, 16, generator=g).cuda()
    cond, uncond = (torch.randn(1, 7, unet_context_dim(), generator=g).cuda() for _ in range(2))
    results, x0s = {}, {}
    for mode in ("eager", "cuda_graph"):
        model = FastUNet(copy.deepcopy(unet).cuda(), dtype=torch.float32, mode=mode, channels_last=True)
        x0s[mode] = []
        results[mode] = sample_video(
            model, avatar, cond, uncond, steps=4, seed=1, callback=lambda *a, m=mode: x0s[m].append(a[4])
        )
    torch.testing.assert_close(results["cuda_graph"], results["eager"], atol=1e-4, rtol=1e-4)
    for a, b in zip(x0s["cuda_graph"], x0s["eager"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    graphs = model._function_graphs[guided_ddim_step]
    assert len(graphs) == 1 and len(model._graphs) == 0  # the steps ran as graphs, not the UNet's own
    model.release_graphs()
    assert len(graphs) == 0
