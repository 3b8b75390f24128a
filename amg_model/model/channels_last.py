"""The AMG UNet's forward pass in the channels-last layout, with the diffusers module's own weights.

diffusers' ``UNet3DConditionModel`` keeps activations in NCHW and reshapes them for every temporal
layer, while cuDNN's fast convolutions and every linear layer want channels last: on a GPU the
eager model spends about a sixth of its time converting layouts and more on permute copies.
Here activations stay ``[B*F, C, H, W]`` tensors in ``torch.channels_last`` memory format (an
``[B, F, H*W, C]`` token array underneath) from the first convolution to the last:

- convolutions run on channels-last tensors (no conversion); on Hopper GPUs those measured faster
  there go through the implicit-GEMM kernel of :mod:`~amg_model.model.tap_conv`
  (:func:`~amg_model.model.tap_conv.measured_config`), which also writes its output's channel sums
  for the GroupNorm that follows, as the bias + residual kernel does
  (:class:`~amg_model.model.fused.ChannelSums`);
- GroupNorm is computed on the token view (statistics over frames too for temporal layers);
- spatial transformers work on the token view without copies; temporal transformers copy once
  into ``[B*H*W, F, C]`` and once back (fused with the residual add);
- temporal 3x1x1 convolutions are Conv3d calls on the channels-last-3d view of the same memory
  (or the tap kernel over frames);
- convolution biases are not added in a pass of their own: they go into the next GroupNorm's
  statistics (``offset``) or into the residual add (:func:`~amg_model.model.fused.add_bias_residual_`);
- on a GPU the transformer blocks' LayerNorms run as one kernel each, fused with the residual
  add before them (:func:`~amg_model.model.fused.add_layer_norm`), and the feed-forward's first
  projection and its GEGLU gating are one matrix-product kernel
  (:func:`~amg_model.model.fused.linear_geglu`);
- the feed-forward's and the spatial transformer's output projections add the residual inside the
  matrix product (in place); their biases ride on passes made anyway;
- the token projections with few channels (``K, N <= 320``) run through a persistent Triton kernel
  on Hopper GPUs (:func:`~amg_model.model.small_k.linear`), faster than cuBLAS on those shapes; the
  others through cuBLASLt without workspace (:mod:`~amg_model.model.cublaslt`): no memory sets in
  the captured graph; the ResNet blocks' time projections are one product per call
  (:func:`fuse_time_projections`);
- attention goes through a replaceable function (``scaled_dot_product_attention`` by default),
  cross-attention keys and values are computed once per video instead of once per frame; on a GPU
  (with the default attention function; the temporal attention with any) every attention whose keys
  fit one tile (the temporal transformers' few frames, the 77 text tokens
  of the cross-attention, the self-attention at 8x8 and 4x4 latent pixels) uses a kernel for short
  key sequences instead (:func:`~amg_model.model.short_attention.few_keys_attention`);
- under classifier-free guidance (``input_copies``) the layers before the first cross-attention
  run once for the branches, which share the video and differ only in the text.

The function is the diffusers forward's (same parameters, same operations in another order and
grouping of float sums); it is checked against diffusers in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from amg_model.model import cublaslt, small_k
from amg_model.model.attention import Attention, sdpa_attention
from amg_model.model.fused import (
    ChannelSums,
    add_bias_residual_,
    add_bias_residual_and_sums_,
    add_layer_norm,
    add_swapped,
    group_norm_tokens,
    layer_norm,
    linear_geglu,
)
from amg_model.model.short_attention import (
    few_keys_attention,
    few_keys_attention_applies,
    short_attention,
    short_attention_applies,
)
from amg_model.model.tap_conv import conv3x3, conv3x3_and_sums, measured_config, temporal_conv3_and_sums


def fuse_projections(unet: torch.nn.Module) -> int:
    """Store each attention's query/key/value weights as one matrix (self-attention), or key/value
    (cross-attention), so that one matrix product computes them.

    The linear layers keep their parameters as views into the fused matrix (a non-persistent
    buffer): no memory is added and the state dict is unchanged. Returns the number of attention
    layers fused.
    """
    count = 0
    for m in unet.modules():
        if not hasattr(m, "to_q") or getattr(m.to_q, "bias", None) is not None:
            continue
        layers = [m.to_k, m.to_v] if m.is_cross_attention else [m.to_q, m.to_k, m.to_v]
        if any(layer.bias is not None for layer in layers):
            continue
        fused = torch.cat([layer.weight.data for layer in layers])
        start = 0
        for layer in layers:
            rows = layer.weight.shape[0]
            layer.weight.data = fused[start : start + rows]
            start += rows
        m.register_buffer("amg_fused_weight", fused, persistent=False)
        count += 1
    return count


def fuse_time_projections(unet: torch.nn.Module) -> int:
    """Store every ResNet block's time-embedding projection as rows of one matrix and one bias
    vector, and the blocks' first-convolution biases as parts of one vector, so that one matrix
    product at the start of :func:`unet_forward` gives every block's GroupNorm offset (instead of one
    small product and one bias sum per block).

    As :func:`fuse_projections`, the layers keep their parameters as views into the fused tensors
    (non-persistent buffers of ``unet``): no memory is added and the state dict is unchanged. Returns
    the number of blocks fused (0 where their projections differ in width or lack a bias).
    """
    blocks = [m for m in unet.modules() if getattr(m, "time_emb_proj", None) is not None]
    if not blocks or any(
        m.time_emb_proj.bias is None
        or getattr(m.conv1, "bias", None) is None
        or m.time_emb_proj.weight.shape[1] != blocks[0].time_emb_proj.weight.shape[1]
        or getattr(m, "time_embedding_norm", "default") != "default"
        for m in blocks
    ):
        return 0
    weight = torch.cat([m.time_emb_proj.weight.data for m in blocks])
    proj_bias = torch.cat([m.time_emb_proj.bias.data for m in blocks])
    conv_bias = torch.cat([m.conv1.bias.data for m in blocks])
    start = 0
    for m in blocks:
        stop = start + m.time_emb_proj.weight.shape[0]
        m.time_emb_proj.weight.data = weight[start:stop]
        m.time_emb_proj.bias.data = proj_bias[start:stop]
        m.conv1.bias.data = conv_bias[start:stop]
        m.amg_time_rows = (start, stop)
        start = stop
    unet.register_buffer("amg_time_weight", weight, persistent=False)
    unet.register_buffer("amg_time_bias", proj_bias, persistent=False)
    unet.register_buffer("amg_conv1_bias", conv_bias, persistent=False)
    return len(blocks)


class TimeOffsets:
    """Each ResNet block's GroupNorm offset ``silu(temb) @ W^T + b + conv1 bias`` (``[B, C]``): one
    matrix product for all blocks of a UNet fused by :func:`fuse_time_projections`, else one per block.

    ``temb_silu`` is ``silu(time embedding)``, ``[B, D]``, one row per video."""

    def __init__(self, unet: torch.nn.Module | None, temb_silu: torch.Tensor):
        self.temb_silu = temb_silu
        self.fused = None
        weight = getattr(unet, "amg_time_weight", None)
        if weight is not None:
            self.fused = cublaslt.linear(temb_silu, weight, unet.amg_time_bias + unet.amg_conv1_bias)

    def repeat(self, copies: int) -> None:
        """Repeat the videos ``copies`` times (``repeat_batch``), as the activations are."""
        self.temb_silu = repeat_batch(self.temb_silu, copies)
        if self.fused is not None:
            self.fused = repeat_batch(self.fused, copies)

    def of(self, block: torch.nn.Module) -> torch.Tensor:
        """``block``'s offset."""
        rows = getattr(block, "amg_time_rows", None)
        if self.fused is not None and rows is not None:
            return self.fused[:, rows[0] : rows[1]]
        proj = block.time_emb_proj
        offset_bias = _sum_of_biases(proj.bias, block.conv1.bias)  # both enter as norm2's offset
        return cublaslt.linear(self.temb_silu, proj.weight, offset_bias)


def to_channels_last(unet: torch.nn.Module) -> torch.nn.Module:
    """Store every convolution weight of ``unet`` channels-last (2D) or channels-last-3d (3D), in
    place; returns ``unet``."""
    for m in unet.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
        elif isinstance(m, torch.nn.Conv3d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last_3d)
    return unet


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` channels-last -> its ``[N, H*W, C]`` token view (no copy)."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


def _image(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[N, H*W, C]`` tokens -> ``[N, C, H, W]`` channels-last view (no copy for contiguous tokens)."""
    n, _, c = tokens.shape
    return tokens.reshape(n, h, w, c).permute(0, 3, 1, 2)


def group_norm(
    x: torch.Tensor,
    norm: torch.nn.GroupNorm,
    frames: int = 1,
    silu: bool = False,
    offset: torch.Tensor | None = None,
    sums: ChannelSums | None = None,
    concat: torch.Tensor | None = None,
) -> torch.Tensor:
    """GroupNorm (optionally followed by SiLU) of a channels-last ``[B*F, C, H, W]`` tensor.

    With ``frames > 1`` the statistics span the ``frames`` consecutive images of each video, as the
    temporal layers' GroupNorm over ``[B, C, F, H, W]``. Statistics are accumulated in float32.
    ``offset [B*F / frames, C]`` is added to ``x`` first (without materialising the sum); an offset
    with fewer rows is shared by consecutive videos (:func:`~amg_model.model.fused.group_norm_tokens`);
    ``sums``: ``x``'s channel sums per video from the convolution that wrote it. ``concat [B*F, C2, H,
    W]``: normalise the channel concatenation of ``x`` and ``concat`` (without writing it where the
    kernels run).
    """
    n, c, h, w = x.shape
    t = _tokens(x).reshape(n // frames, frames * h * w, c)
    if concat is not None:
        concat = _tokens(concat).reshape(n // frames, frames * h * w, concat.shape[1])
    y = group_norm_tokens(
        t, norm.num_groups, norm.weight, norm.bias, norm.eps, silu=silu, offset=offset, sums=sums,
        concat=concat,
    )  # fmt: skip
    return _image(y.view(n, h * w, y.shape[-1]), h, w)


def _temporal_conv3d(
    x: torch.Tensor, conv: torch.nn.Conv3d, frames: int, sums: bool
) -> tuple[torch.Tensor, ChannelSums | None]:
    """The same (3, 1, 1) convolution on the channels-last frames, without its bias (the caller adds
    it in a pass it already makes): the tap kernel where it was measured faster, with the output's
    channel sums per video if ``sums``; else one Conv3d call on the channels-last-3d view (no copy)."""
    weight = conv.weight.contiguous(memory_format=torch.channels_last_3d)  # no copy after to_channels_last
    config = measured_config(x, weight, frames=frames)
    if config is not None:
        return temporal_conv3_and_sums(x, weight, frames, config, sums=sums)
    n, c, h, w = x.shape
    x5 = _tokens(x).view(n // frames, frames, h, w, c).permute(0, 4, 1, 2, 3)  # [B, C, F, H, W], NDHWC
    y = F.conv3d(x5, weight, None, padding=(1, 0, 0))
    y = y.contiguous(memory_format=torch.channels_last_3d).permute(0, 2, 1, 3, 4)  # [B, F, Cout, H, W]
    return y.reshape(n, -1, h, w), None


def temporal_conv_layer(
    layer: torch.nn.Module, x: torch.Tensor, frames: int, sums: ChannelSums | None = None
) -> torch.Tensor:
    """diffusers' ``TemporalConvLayer``: four (GroupNorm, SiLU, 3x1x1 conv) stages and a residual.

    The convolutions' biases are added inside the next GroupNorm (its ``offset``) or, for the last,
    with the residual: a convolution adds its bias in a separate pass over the output. Each of the
    first three convolutions hands the next GroupNorm its output's channel sums; ``sums`` are
    ``x``'s, per frame, from the kernel that wrote it.
    """
    return temporal_conv_layer_and_sums(layer, x, frames, sums)[0]


def temporal_conv_layer_and_sums(
    layer: torch.nn.Module, x: torch.Tensor, frames: int, sums: ChannelSums | None = None
) -> tuple[torch.Tensor, ChannelSums | None]:
    """:func:`temporal_conv_layer`, and its output's channel sums per frame where the residual kernel
    gives them."""
    if sums is not None:  # per frame -> per video: a video's chunks are its frames' chunks
        n, chunks, c = sums.sums.shape
        sums = ChannelSums(*(t.view(n // frames, frames * chunks, c) for t in sums))
    h, bias = x, None
    blocks = (layer.conv1, layer.conv2, layer.conv3, layer.conv4)
    for i, block in enumerate(blocks):
        offset = None if bias is None else bias[None]  # one row for all videos
        h = group_norm(h, block[0], frames, silu=True, offset=offset, sums=sums)
        h, sums = _temporal_conv3d(h, block[-1], frames, sums=i < len(blocks) - 1)
        bias = block[-1].bias  # added by the next stage's GroupNorm, or with the residual after the last
    return add_bias_residual_and_sums_(h, x, bias)


def _conv_without_bias(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` without its bias, which the caller adds in a later pass it already makes (a 3x3
    convolution of stride 1 and zero padding 1 through the tap kernel where it runs)."""
    config = _tap_config(conv, x)
    if config is not None:
        return conv3x3(x, conv.weight, config=config)
    return conv._conv_forward(x, conv.weight, None)


def _tap_config(conv: torch.nn.Conv2d, x: torch.Tensor, bias: torch.Tensor | None = None):
    """The tap kernel's configuration for ``conv`` on ``x`` (with ``bias``) where ``conv`` is a 3x3
    convolution of stride 1 and zero padding 1 (what :func:`~amg_model.model.tap_conv.conv3x3`
    computes) that the kernel was measured to run faster than cuDNN; else None."""
    plain_3x3 = (
        conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )
    return measured_config(x, conv.weight, bias) if plain_3x3 else None


def _sum_of_biases(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or b is None:
        return b if a is None else a
    return a + b


def resnet_block(block: torch.nn.Module, x: torch.Tensor, temb_silu: torch.Tensor) -> torch.Tensor:
    """diffusers' ``ResnetBlock2D`` (default time-embedding norm) on channels-last frames.

    ``temb_silu`` is ``silu(time embedding)``, ``[B, D]``, one row per video (the same for every
    block); its projection is added to all frames of that video (``x`` holds ``B * F`` frames).
    """
    return resnet_block_and_sums(block, x, temb_silu)[0]


def _shortcut_of_concat(conv: torch.nn.Conv2d, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor | None:
    """A 1x1 convolution (no bias) of the channel concatenation of ``x`` and ``skip`` as two matrix
    products over the token views, the second adding into the first's output (no concatenated
    copy); None for other convolutions."""
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1 or conv.padding != (0, 0):
        return None
    n, c1, h, w = x.shape
    weight = conv.weight.view(conv.weight.shape[0], -1)  # [Cout, C1 + C2]
    out = cublaslt.linear(_tokens(x), weight[:, :c1])
    skip_tokens = _tokens(skip).reshape(-1, skip.shape[1])
    cublaslt.add_linear_(out.view(-1, out.shape[-1]), skip_tokens, weight[:, c1:])
    return _image(out, h, w)


def resnet_block_and_sums(
    block: torch.nn.Module,
    x: torch.Tensor,
    temb_silu: torch.Tensor | TimeOffsets,
    sums: ChannelSums | None = None,
    skip: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ChannelSums | None]:
    """:func:`resnet_block`, and its output's channel sums per frame where the residual kernel gives
    them (for the temporal layer's first GroupNorm); ``sums`` are ``x``'s, per frame. ``temb_silu``
    may also come as the :class:`TimeOffsets` of the forward.

    ``skip``: the block's input is the channel concatenation of ``x`` and ``skip`` (an up block's skip
    connection); its GroupNorm and its 1x1 shortcut read the two parts, so the concatenation is not
    written (where the shortcut is not a 1x1 convolution it is)."""
    shortcut = None
    if skip is not None and block.conv_shortcut is not None:
        shortcut = _shortcut_of_concat(block.conv_shortcut, x, skip)
    if skip is not None and shortcut is None:
        x, skip = torch.cat([x, skip], dim=1), None
    h = group_norm(x, block.norm1, silu=True, sums=sums, concat=skip)
    sums = None  # conv1's output's channel sums per frame, for norm2, where the tap kernel gives them
    config = _tap_config(block.conv1, h)
    if config is not None:
        h, sums = conv3x3_and_sums(h, block.conv1.weight, config=config)
    else:
        h = block.conv1._conv_forward(h, block.conv1.weight, None)
    if isinstance(temb_silu, torch.Tensor):
        temb_silu = TimeOffsets(None, temb_silu)
    t = temb_silu.of(block)  # [B, C]
    h = group_norm(h, block.norm2, silu=True, offset=t, sums=sums)  # norm2(h + t)
    h = _conv_without_bias(block.conv2, h)
    out_bias = block.conv2.bias
    if block.conv_shortcut is not None:
        if shortcut is None:
            shortcut = _conv_without_bias(block.conv_shortcut, x)
        out_bias = _sum_of_biases(out_bias, block.conv_shortcut.bias)
    else:
        shortcut = x
    if block.output_scale_factor != 1.0:
        return add_bias_residual_(h, shortcut, out_bias).div_(block.output_scale_factor), None
    return add_bias_residual_and_sums_(h, shortcut, out_bias)


def _attention(
    attn: torch.nn.Module,
    x: torch.Tensor,
    context: torch.Tensor | None,
    attention: Attention,
    frames: int = 1,
) -> torch.Tensor:
    """diffusers ``Attention`` on tokens ``x [N, L, C]``; ``context [B, M, D]`` is shared by ``frames``."""
    fused = getattr(attn, "amg_fused_weight", None)
    if fused is not None and context is None:
        q, k, v = cublaslt.linear(x, fused).chunk(3, dim=-1)
    else:
        q = _linear(attn.to_q, x)
        source = x if context is None else context
        if fused is not None:
            k, v = cublaslt.linear(source, fused).chunk(2, dim=-1)
        else:
            k, v = attn.to_k(source), attn.to_v(source)
    if context is not None and frames > 1:
        # every frame of a video attends to the same keys: one attention over all its frames'
        # queries instead of copying the keys and values per frame
        n, length, c = q.shape
        out = attention(q.reshape(n // frames, frames * length, c), k, v, attn.heads)
        return _linear(attn.to_out[0], out.reshape(n, length, c))
    return _linear(attn.to_out[0], attention(q, k, v, attn.heads))


def _linear(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A token projection (``nn.Linear``): :func:`~amg_model.model.small_k.linear` (a persistent
    kernel for the small shapes where it is faster), else the module itself."""
    if isinstance(layer, torch.nn.Linear):
        return small_k.linear(x, layer.weight, layer.bias)
    return layer(x)


def _feed_forward_hidden(ff: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    proj = ff.net[0].proj
    return linear_geglu(x, proj.weight, proj.bias)


def _feed_forward(ff: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ff.net[2](_feed_forward_hidden(ff, x))


def _add_linear_(residual: torch.Tensor, x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
    """``residual += x @ linear.weight.T`` in place, one matrix product that reads the residual in its
    epilogue (out of place, torch would first copy the residual); the layer's bias is not added:
    ``residual`` carries it. ``residual`` must be contiguous as rows of its last dimension."""
    cublaslt.add_linear_(residual.view(-1, residual.shape[-1]), x.reshape(-1, x.shape[-1]), linear.weight)
    return residual


def repeat_batch(x: torch.Tensor, copies: int) -> torch.Tensor:
    """``copies`` copies of ``x`` along the batch (dim 0), in ``x``'s memory format."""
    return x if copies == 1 else torch.cat([x] * copies)


def _transformer_block(
    block: torch.nn.Module,
    x: torch.Tensor,
    context: torch.Tensor | None,
    attention: Attention,
    frames: int,
    fused_norms: bool = True,
    copies: int = 1,
) -> torch.Tensor:
    """diffusers ``BasicTransformerBlock`` (layer norms, self-, cross- or second self-attention, GEGLU).

    With ``fused_norms`` the norms go through :func:`~amg_model.model.fused.layer_norm` and, with
    the residual adds before ``norm2`` and ``norm3`` in the same pass,
    :func:`~amg_model.model.fused.add_layer_norm` (the same torch ops where their kernels do not run);
    the last residual add happens inside the feed-forward's output projection.
    ``copies > 1``: ``x`` is shared by ``copies`` contexts (``context`` has ``copies`` times its
    batch); it is copied for them just before the cross-attention.
    """
    if not fused_norms:
        x = repeat_batch(x + _attention(block.attn1, block.norm1(x), None, attention), copies)
        x = x + _attention(block.attn2, block.norm2(x), context, attention, frames)
        return x + _feed_forward(block.ff, block.norm3(x))
    n1, n2, n3 = block.norm1, block.norm2, block.norm3
    h = _attention(block.attn1, layer_norm(x, n1.weight, n1.bias, n1.eps), None, attention)
    x, h = add_layer_norm(x, h, n2.weight, n2.bias, n2.eps)
    x, h = repeat_batch(x, copies), repeat_batch(h, copies)
    h = _attention(block.attn2, h, context, attention, frames)
    out = block.ff.net[2]
    x, h = add_layer_norm(x, h, n3.weight, n3.bias, n3.eps, stored_bias=out.bias)  # x + out.bias
    return _add_linear_(x, _feed_forward_hidden(block.ff, h), out)


def spatial_transformer(
    model: torch.nn.Module,
    x: torch.Tensor,
    context: torch.Tensor,
    attention: Attention,
    frames: int,
    fused_norms: bool = True,
    copies: int = 1,
    sums: ChannelSums | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """diffusers ``Transformer2DModel``: each frame's pixels attend to each other and to the text.

    Returns ``(out, bias)``: the result is ``out + bias`` (``bias [C]`` or None). With ``fused_norms``
    the residual is added inside the output projection, in place: ``out`` is ``x`` overwritten. The
    projection's bias is left for the next layer to add in a pass it makes anyway
    (:func:`temporal_transformer`'s ``input_bias``).
    ``copies > 1``: ``x`` is shared by ``copies`` contexts (``context`` has ``copies`` times its
    batch); the result has ``copies`` times the batch of ``x``. ``sums``: ``x``'s channel sums per
    frame, from the kernel that wrote it.
    """
    n, c, h, w = x.shape
    t = _linear(model.proj_in, _tokens(group_norm(x, model.norm, sums=sums)))
    for i, block in enumerate(model.transformer_blocks):
        t = _transformer_block(block, t, context, attention, frames, fused_norms, copies if i == 0 else 1)
    if fused_norms and copies == 1:
        # x, the block's input, is not used after it: the output overwrites it
        return _image(_add_linear_(_tokens(x), t, model.proj_out), h, w), model.proj_out.bias
    out = _image(_linear(model.proj_out, t), h, w)
    out.view(-1, n, c, h, w).add_(x)  # x is the residual of every copy
    return out, None


def few_keys_first(attention: Attention) -> Attention:
    """``attention`` with every attention whose keys fit one tile (the 77 text tokens, a small
    frame's pixels) sent to :func:`few_keys_attention` where its Triton kernel runs (CUDA)."""

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
        if few_keys_attention_applies(q, k, v, heads):
            return few_keys_attention(q, k, v, heads)
        return attention(q, k, v, heads)

    return attend


def temporal_attention(attention: Attention) -> Attention:
    """``attention`` with sequences of up to 64 tokens sent to :func:`short_attention` where its
    Triton kernel runs (CUDA); everywhere else (CPU, ``torch.compile``) ``attention`` itself runs."""

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
        if short_attention_applies(q, k, v, heads):
            return short_attention(q, k, v, heads)
        return attention(q, k, v, heads)

    return attend


def temporal_transformer(
    model: torch.nn.Module,
    x: torch.Tensor,
    attention: Attention,
    frames: int,
    fused_norms: bool = True,
    input_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """diffusers ``TransformerTemporalModel``: each pixel's frames attend to each other.

    ``input_bias [C]``: the input is ``x + input_bias`` (added inside the GroupNorm and the residual add).
    """
    n, c, h, w = x.shape
    b, hw = n // frames, h * w
    tokens = _tokens(x).reshape(b, frames * hw, c)
    norm = model.norm
    offset = None if input_bias is None else input_bias[None]  # one row for all videos
    t = group_norm_tokens(
        tokens, norm.num_groups, norm.weight, norm.bias, norm.eps, swap_frames=frames, offset=offset
    )
    t = _linear(model.proj_in, t.view(b * hw, frames, c))  # rows [pixels, frames]
    for block in model.transformer_blocks:
        t = _transformer_block(block, t, None, attention, 1, fused_norms)
    proj = model.proj_out
    t = small_k.linear(t, proj.weight, _sum_of_biases(proj.bias, input_bias))
    out = add_swapped(tokens, t.view(b, hw * frames, c), frames)
    return _image(out.view(n, hw, c), h, w)


def _upsample(up: torch.nn.Module, x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is None:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
    else:
        x = F.interpolate(x, size=size, mode="nearest")
    conv = up.conv
    config = _tap_config(conv, x, conv.bias)
    if config is not None:
        return conv3x3(x, conv.weight, conv.bias, config=config)
    return conv(x)


def _layers(block: torch.nn.Module) -> zip:
    """A down or up block's (resnet, temporal conv, spatial transformer, temporal transformer) per
    layer; the transformers are None in blocks without attention."""
    none = [None] * len(block.resnets)
    attentions = getattr(block, "attentions", None) or none
    temp_attentions = getattr(block, "temp_attentions", None) or none
    return zip(block.resnets, block.temp_convs, attentions, temp_attentions, strict=True)


def unet_forward(
    unet: torch.nn.Module,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    context: torch.Tensor,
    attention: Attention = sdpa_attention,
    temporal: Attention | None = None,
    fused_norms: bool = True,
    input_copies: int = 1,
) -> torch.Tensor:
    """diffusers ``UNet3DConditionModel`` forward in the channels-last layout.

    Args:
        unet: the diffusers model (its convolution weights are best stored channels-last:
            :func:`to_channels_last`).
        sample: ``[B, C_in, F, h, w]``.
        timestep: ``[B]`` or a scalar.
        context: ``[B, M, D]`` text tokens.
        attention: ``(q, k, v, heads) -> out`` on ``[N, L, C]`` token arrays. The default
            (:func:`~amg_model.model.attention.sdpa_attention`) goes through :func:`few_keys_first`
            (the short-key kernel for the cross-attention and the self-attention of small frames);
            another function is used for every spatial and cross attention as given.
        temporal: the attention of the temporal transformers (over frames); None:
            ``temporal_attention(attention)`` (the short-sequence kernel where it runs).
        fused_norms: the transformer blocks' LayerNorms and the residual adds before them through
            the fused kernels (:func:`~amg_model.model.fused.add_layer_norm`) where they run, and the
            other residual adds inside the output projections; False: the LayerNorm modules and
            separate adds (for comparison).
        input_copies: ``sample`` and ``timestep`` are this many copies of their first
            ``B / input_copies`` rows, and only ``context`` differs between the copies (as with
            classifier-free guidance). The layers before the first cross-attention then run once
            for all copies; the caller is trusted that the copies are equal.

    Returns:
        ``[B, C_out, F, h, w]``, as the diffusers forward.
    """
    b, _, frames, height, width = sample.shape
    if input_copies < 1 or b % input_copies:
        raise ValueError(f"input_copies={input_copies} does not divide the batch of {b} videos.")
    temporal = temporal or temporal_attention(attention)
    if attention is sdpa_attention:  # the default; a caller's own function (ComfyUI's) is kept
        attention = few_keys_first(attention)
    timestep = torch.as_tensor(timestep, device=sample.device)
    if timestep.ndim == 0:
        timestep = timestep[None]
    b_in = b // input_copies  # videos computed until the first cross-attention
    temb = unet.time_proj(timestep.expand(b)[:b_in]).to(sample.dtype)
    time = TimeOffsets(unet, F.silu(unet.time_embedding(temb)))
    x = sample[:b_in].transpose(1, 2).reshape(b_in * frames, -1, height, width)
    # conv_in's bias rides on the first temporal transformer's GroupNorm and residual add (cuDNN adds
    # it in a pass of its own, a third of this convolution's time)
    x = _conv_without_bias(unet.conv_in, x.contiguous(memory_format=torch.channels_last))
    x = temporal_transformer(
        unet.transformer_in, x, temporal, frames, fused_norms, input_bias=unet.conv_in.bias
    )
    skips = [x]
    copies = input_copies  # still to be made

    def transformers(
        attn: torch.nn.Module, temp_attn: torch.nn.Module, x: torch.Tensor, sums: ChannelSums | None
    ) -> torch.Tensor:
        """A layer's spatial transformer (with the cross-attention) and temporal transformer."""
        nonlocal copies, skips
        x, bias = spatial_transformer(attn, x, context, attention, frames, fused_norms, copies, sums)
        if copies > 1:  # from here on every copy has its own activations
            time.repeat(copies)
            skips = [repeat_batch(s, copies) for s in skips]
            copies = 1
        return temporal_transformer(temp_attn, x, temporal, frames, fused_norms, input_bias=bias)

    # sums: x's channel sums per frame where the kernel that wrote x gave them, for its GroupNorm
    for block in unet.down_blocks:
        sums = None
        for resnet, temp_conv, attn, temp_attn in _layers(block):
            x, sums = resnet_block_and_sums(resnet, x, time, sums)
            x, sums = temporal_conv_layer_and_sums(temp_conv, x, frames, sums)
            if attn is not None:
                x, sums = transformers(attn, temp_attn, x, sums), None
            skips.append(x)
        if block.downsamplers is not None:
            for down in block.downsamplers:
                x = down.conv(x)
            skips.append(x)

    mid = unet.mid_block
    x, sums = resnet_block_and_sums(mid.resnets[0], x, time)
    x, sums = temporal_conv_layer_and_sums(mid.temp_convs[0], x, frames, sums)
    for attn, temp_attn, resnet, temp_conv in zip(
        mid.attentions, mid.temp_attentions, mid.resnets[1:], mid.temp_convs[1:], strict=True
    ):
        x = transformers(attn, temp_attn, x, sums)
        x, sums = resnet_block_and_sums(resnet, x, time)
        x, sums = temporal_conv_layer_and_sums(temp_conv, x, frames, sums)

    for block in unet.up_blocks:
        for resnet, temp_conv, attn, temp_attn in _layers(block):
            x, sums = resnet_block_and_sums(resnet, x, time, skip=skips.pop())
            x, sums = temporal_conv_layer_and_sums(temp_conv, x, frames, sums)
            if attn is not None:
                x = transformers(attn, temp_attn, x, sums)
        if block.upsamplers is not None:
            size = tuple(skips[-1].shape[2:]) if skips else None
            for up in block.upsamplers:
                x = _upsample(up, x, size)

    x = unet.conv_out(group_norm(x, unet.conv_norm_out, silu=True))
    return x.reshape(b, frames, *x.shape[1:]).transpose(1, 2)
