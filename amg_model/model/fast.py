"""Fast execution of the AMG UNet on a GPU: precision, memory format, CUDA graphs, compilation.

The eager diffusers UNet launches about 2,700 small kernels per call and is bound by launch
overhead on a large GPU. Replaying one captured CUDA graph per input shape removes that
overhead without any compilation; the channels-last forward (``model.channels_last``) removes
layout conversions and fuses the normalisation and gating kernels; ``torch.compile`` fuses
more, after minutes of compilation. All modes compute the same function (within the dtype's rounding).

Modes:
    "eager"               plain module calls.
    "cuda_graph"          capture the eager forward once per input shape (and weight addresses),
                          then replay it.
    "compile"             ``torch.compile`` (default mode); slow first call.
    "compile_cuda_graph"  ``torch.compile(mode="reduce-overhead")``: compiled and graph-replayed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch

from amg_model.model.attention import flash_attention, sdpa_attention
from amg_model.model.channels_last import (
    fuse_projections,
    fuse_time_projections,
    to_channels_last,
    unet_forward,
)

log = logging.getLogger(__name__)

MODES = ("eager", "cuda_graph", "compile", "compile_cuda_graph")
ATTENTION = {"sdpa": sdpa_attention, "flash": flash_attention}


class _GraphedCall:
    """One captured CUDA graph of ``fn`` for fixed input shapes, with static input buffers; ``fn``
    returns a tensor or a tuple of tensors."""

    def __init__(self, fn: Callable, example: tuple[torch.Tensor, ...], warmup: int = 2):
        self.inputs = tuple(t.clone() for t in example)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = fn(*self.inputs)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        for dst, src in zip(self.inputs, args, strict=True):
            dst.copy_(src)
        self.graph.replay()
        if isinstance(self.output, tuple):
            return tuple(t.clone() for t in self.output)
        return self.output.clone()


class GraphedForward:
    """``fn(*tensors)`` replayed from CUDA graphs: one per input shapes, for the current weights.

    A graph reads the weights of ``module`` from the addresses they had when it was captured.
    When any weight has moved or been replaced (offloading, a patched copy) every graph is
    dropped, with the activation memory it holds, and the next call captures again; in-place
    edits of a weight are seen by the graphs. The ``max_graphs`` most recently used input
    shapes keep their graphs. ``capture(fn, args)`` makes one graph (tests pass a stand-in).
    """

    def __init__(
        self,
        fn: Callable,
        module: torch.nn.Module | None = None,
        max_graphs: int = 4,
        capture: Callable[[Callable, tuple[torch.Tensor, ...]], Callable] = _GraphedCall,
    ):
        self.fn = fn
        self.max_graphs = max_graphs
        self.capture = capture
        self._graphs: dict[tuple, Callable] = {}
        self._weights: tuple[int, ...] = ()
        # (owner dict, name) of every parameter and buffer: a replaced tensor is found by name
        self._slots = []
        for m in module.modules() if module is not None else ():
            for table in (m._parameters, m._buffers):
                self._slots += [(table, name) for name, t in table.items() if t is not None]

    def __len__(self) -> int:
        return len(self._graphs)

    def release(self) -> None:
        """Drop every graph and the memory it holds (call ``torch.cuda.empty_cache`` to return it)."""
        self._graphs.clear()

    def __call__(self, *args: torch.Tensor, **options) -> torch.Tensor:
        """``fn(*args, **options)``; ``options`` (plain values) are fixed in each graph, as the shapes."""
        weights = tuple(table[name].data_ptr() for table, name in self._slots)
        if weights != self._weights:  # graphs of the old addresses would read freed or stale memory
            self.release()
            self._weights = weights
        key = (tuple((tuple(a.shape), a.dtype) for a in args), tuple(sorted(options.items())))
        graph = self._graphs.pop(key, None)
        if graph is None:
            while len(self._graphs) >= self.max_graphs:
                self._graphs.pop(next(iter(self._graphs)))
            log.info("capturing a CUDA graph of the UNet for input shape %s", tuple(args[0].shape))
            graph = self.capture(functools.partial(self.fn, **options), args)
        self._graphs[key] = graph  # most recently used last
        return graph(*args)


@torch.no_grad()
def _eager_forward(
    unet: torch.nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    context: torch.Tensor,
    *,
    autocast: bool,
    channels_last: bool,
    attention: Callable,
    temporal: Callable | None,
    fused_norms: bool,
    input_copies: int = 1,
) -> torch.Tensor:
    with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
        if channels_last:
            return unet_forward(unet, x, t, context, attention, temporal, fused_norms, input_copies)
        return unet(x, t, encoder_hidden_states=context, return_dict=False)[0]


class FastUNet:
    """Callable ``(x [B,C,F,h,w], t [B], context [B,77,D]) -> eps [B,4,F,h,w]`` in a fast mode.

    It also takes ``input_copies`` (see ``__call__``), which ``sampling.guidance.guided_eps`` passes
    to UNets whose ``takes_input_copies`` is true.

    Args:
        unet: a diffusers ``UNet3DConditionModel`` (weights are cast to ``dtype`` in place).
        dtype: weight and activation dtype (float16 is the default choice on GPUs: it stays
            about 10x closer to the float32 result than bfloat16 with the same speed).
        mode: one of MODES.
        channels_last: run :func:`~amg_model.model.channels_last.unet_forward` (activations and
            convolution weights channels-last throughout) instead of the diffusers forward.
        autocast: keep weights in ``dtype`` but run under fp16 autocast (the original release's
            way: float32 weights under autocast).
        fused_projections: (channels-last forward only) one matrix product for each attention's
            query, key and value, and one for every ResNet block's time-embedding projection.
        attention: (channels-last forward only) ``"sdpa"`` (torch's choice of backend) or ``"flash"``.
        short_attention: (channels-last forward only) the temporal transformers' attention over frames
            through the short-sequence kernel (``model.short_attention``) where it runs, else ``attention``.
        fused_norms: (channels-last forward only) the transformer blocks' LayerNorms fused with the
            residual adds before them (``model.fused.add_layer_norm``) where the kernels run, the
            other residual adds inside the output projections (``unet_forward``'s ``fused_norms``).
    """

    takes_input_copies = True

    def __init__(
        self,
        unet: torch.nn.Module,
        dtype: torch.dtype = torch.float16,
        mode: str = "eager",
        channels_last: bool = False,
        autocast: bool = False,
        fused_projections: bool = False,
        attention: str = "sdpa",
        short_attention: bool = True,
        fused_norms: bool = True,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown UNet execution mode {mode!r}; use one of {MODES}.")
        if attention not in ATTENTION:
            raise ValueError(f"unknown attention {attention!r}; use one of {tuple(ATTENTION)}.")
        # torch's own Module.to: diffusers' override warns about fp32-pinned modules it has none of
        self.unet = torch.nn.Module.to(unet, dtype=dtype).eval().requires_grad_(False)
        if channels_last:
            to_channels_last(self.unet)
            if fused_projections:
                fuse_projections(self.unet)
                fuse_time_projections(self.unet)
        self.attention = ATTENTION[attention]
        self.temporal_attention = None if short_attention else self.attention
        self.mode = mode
        # a function of the module, not a method: the graphs and compiled code that keep it must not
        # keep this object (a reference cycle holds the weights until the garbage collector runs)
        self._eager = functools.partial(
            _eager_forward, self.unet, autocast=autocast, channels_last=channels_last,
            attention=self.attention, temporal=self.temporal_attention, fused_norms=fused_norms,
        )  # fmt: skip
        self._graphs = GraphedForward(self._eager, self.unet)
        forward: Callable = self._eager
        if mode == "compile":
            forward = torch.compile(self._eager, dynamic=False)
        elif mode == "compile_cuda_graph":
            forward = torch.compile(self._eager, mode="reduce-overhead", dynamic=False)
        self._direct = _UNetCall(forward, self.unet.dtype, autocast, channels_last)
        self._function_graphs: dict[Callable, GraphedForward] = {}

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the UNet's inputs are cast to (float16 under autocast)."""
        return self._direct.dtype

    @property
    def autocast(self) -> bool:
        return self._direct.autocast

    @property
    def channels_last(self) -> bool:
        return self._direct.channels_last

    def release_graphs(self) -> None:
        """Free the CUDA graphs of mode "cuda_graph" and their activation memory (before offloading)."""
        self._graphs.release()
        for graphs in self._function_graphs.values():
            graphs.release()

    def graphed(self, fn: Callable) -> Callable:
        """``fn(unet, *tensors, **options)`` called with this UNet, as ``(*tensors, **options)``; in mode
        "cuda_graph" on CUDA tensors, replayed from one CUDA graph per input shapes and options, which
        holds ``fn``'s own operations and the UNet's (``sampling.step`` captures a whole sampling step).
        ``fn`` must read no host values of its tensors and return a tensor or a tuple of tensors."""
        if self.mode != "cuda_graph":
            return functools.partial(fn, self)
        if fn not in self._function_graphs:
            self._function_graphs[fn] = GraphedForward(
                functools.partial(fn, self._direct), self.unet, max_graphs=2
            )
        return _CudaOrDirect(self._function_graphs[fn], functools.partial(fn, self._direct))

    @torch.no_grad()
    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, input_copies: int = 1
    ) -> torch.Tensor:
        """The UNet; ``input_copies``: ``x`` and ``t`` are that many copies of their first rows, only
        ``context`` differs (guidance): the channels-last forward runs the shared layers once
        (``model.channels_last.unet_forward``)."""
        if self.mode != "cuda_graph" or x.device.type != "cuda":
            return self._direct(x, t, context, input_copies)
        x, t, context, options = self._direct.inputs(x, t, context, input_copies)
        return self._graphs(x, t, context, **options)


class _UNetCall:
    """The UNet callable of a :class:`FastUNet` without its graphs: input casts, then ``forward``."""

    takes_input_copies = True

    def __init__(self, forward: Callable, dtype: torch.dtype, autocast: bool, channels_last: bool):
        self.forward = forward
        self.dtype = torch.float16 if autocast else dtype
        self.autocast = autocast
        self.channels_last = channels_last

    def inputs(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, input_copies: int) -> tuple:
        x = x.to(self.dtype if not self.autocast else x.dtype)
        options = {"input_copies": input_copies} if self.channels_last and input_copies > 1 else {}
        return x, t.to(x.device), context.to(x.dtype), options

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, input_copies: int = 1
    ) -> torch.Tensor:
        x, t, context, options = self.inputs(x, t, context, input_copies)
        return self.forward(x, t, context, **options)


class _CudaOrDirect:
    """``graphed(*args, **options)`` for CUDA tensors, else ``direct(*args, **options)``."""

    def __init__(self, graphed: Callable, direct: Callable):
        self.graphed, self.direct = graphed, direct

    def __call__(self, *args: torch.Tensor, **options):
        return (self.graphed if args[0].is_cuda else self.direct)(*args, **options)
