"""The AMG UNet as a native ComfyUI model, and the node that loads it.

The UNet from ``amg_model.model`` becomes the ``diffusion_model`` of a ``comfy.model_base.BaseModel``
in a ``ModelPatcher``, so the stock samplers, previews, cancel, VRAM management, LoRA patches and
context windows all work. ComfyUI keeps video frames in the batch dimension (``[frames, 4, h, w]``),
as for the other SD-family video models; the wrapper below regroups them into the
``[videos, 8, frames, h, w]`` layout of the UNet and back.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import weakref
from typing import TYPE_CHECKING

import comfy.conds
import comfy.context_windows
import comfy.latent_formats
import comfy.ldm.modules.attention
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.patcher_extension
import comfy.supported_models_base
import torch
from comfy_api.latest import io

from amg_model.errors import SamplingError

from . import edges

if TYPE_CHECKING:  # the UNet module imports diffusers, which takes seconds: only when a model loads
    from amg_model.model.unet import AMGUNet

log = logging.getLogger(__name__)

AVATAR_KEY = "amg_avatar"


class AMGModelConfig(comfy.supported_models_base.BASE):
    """ComfyUI model config of AMG: epsilon prediction on SD's scaled-linear schedule, SD latents.

    ComfyUI's "linear" beta schedule is SD's ``linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2``,
    the schedule AMG was trained with ("linear_sd").
    """

    unet_config = {"disable_unet_model_creation": True}
    unet_extra_config = {}
    sampling_settings = {"beta_schedule": "linear", "linear_start": 0.00085, "linear_end": 0.012}
    latent_format = comfy.latent_formats.SD15
    supported_inference_dtypes = edges.SUPPORTED_UNET_DTYPES
    memory_usage_factor = 2.0


class AvatarLatentCond(comfy.conds.CONDRegular):
    """The clean avatar latent ``[frames, 4, h, w]`` of one conditioning, kept whole.

    Unlike ``CONDNoiseShape`` it is not cut to the sampler's batch: with context windows the
    sampler only sends a window of frames, and the model picks the matching avatar frames.
    """

    def process_cond(self, batch_size, area=None, **kwargs):
        data = self.cond
        if area is not None:  # spatial area conditioning: same crop as the noise
            dims = len(area) // 2
            for i in range(dims):
                data = data.narrow(i + 2, area[i + dims], area[i])
        return self._copy_with(data)

    def can_concat(self, other):
        return self.cond.shape == other.cond.shape and self.cond.device == other.cond.device

    def concat(self, others):
        parts = [self.cond] + [o.cond for o in others]
        first = parts[0]
        same = all(
            p.data_ptr() == first.data_ptr() and p.shape == first.shape and p.stride() == first.stride()
            for p in parts[1:]
        )
        return AvatarChunks(torch.cat(parts), same)


@dataclasses.dataclass
class AvatarChunks:
    """The avatar latents of the conditionings in one model call, ``[chunks * frames, 4, h, w]``.

    ``same``: every chunk is the same region of one tensor. The sampler then sends the same noisy
    latent with each (a crop of the same area), so the chunks differ only in their text: the UNet
    runs its first layers once for all (guidance's batch), with no device sync to compare them.
    It has no ``dtype``: ComfyUI passes it to the model as it is, where it would cast a tensor.
    """

    latent: torch.Tensor
    same: bool


def _comfy_operations(module: torch.nn.Module, operations) -> None:
    """Give the UNet's layers ComfyUI's cast-aware layer classes (same parameters, same maths).

    ComfyUI's weight casting, low-VRAM partial loading and LoRA weight functions only act on
    layers of its ``comfy.ops`` classes; the diffusers UNet is built from the plain torch ones.
    """
    swaps = {
        torch.nn.Linear: operations.Linear,
        torch.nn.Conv1d: operations.Conv1d,
        torch.nn.Conv2d: operations.Conv2d,
        torch.nn.Conv3d: operations.Conv3d,
        torch.nn.GroupNorm: operations.GroupNorm,
        torch.nn.LayerNorm: operations.LayerNorm,
    }
    for m in module.modules():
        new = swaps.get(type(m))
        if new is not None:
            m.__class__ = new


class AMGDiffusionModel(torch.nn.Module):
    """An ``AMGUNet`` (attribute ``amg``) with ComfyUI's diffusion-model call convention.

    ComfyUI calls it with ``x [chunks * frames, 4, h, w]``: with classifier-free guidance the
    positive and negative videos come as consecutive chunks of the batch, listed in
    ``transformer_options["cond_or_uncond"]``. The avatar latent arrives whole per chunk (``amg_avatar``,
    ``[chunks * all_frames, 4, h, w]``); under context windows the frames of the current window
    are picked with ``transformer_options["context_window"]``.
    """

    def __init__(self, unet: AMGUNet):
        super().__init__()
        self.amg = unet
        self._graphed = None
        self._layers = None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _run_unet(
        self, video: torch.Tensor, t: torch.Tensor, text: torch.Tensor, copies: int = 1
    ) -> torch.Tensor:
        """The UNet call: on CUDA with plain resident weights, the channels-last forward replayed as
        CUDA graphs (ComfyUI's attention function); otherwise the module itself, whose layers
        cast, offload and patch their weights the ComfyUI way. ``copies``: ``video`` is that many
        copies of one video (``input_copies`` of the channels-last forward)."""
        unet = self.amg.unet
        if self._layers is None:  # ComfyUI's cast-aware layers (all that hold weights)
            self._layers = [m for m in unet.modules() if hasattr(m, "comfy_cast_weights")]
        if not (video.is_cuda and self._layers and _plain_weights(self._layers, video.device, video.dtype)):
            self.release_graphs()  # weights cast, offloaded or patched per call: the graphs are stale
            return self.amg(video, t, text)
        if self._graphed is None:
            from amg_model.model.channels_last import unet_forward
            from amg_model.model.fast import GraphedForward

            attention = comfy.ldm.modules.attention.optimized_attention
            self._graphed = GraphedForward(
                functools.partial(unet_forward, unet, attention=attention), unet, max_graphs=2
            )
        options = {"input_copies": copies} if copies > 1 else {}
        with torch.no_grad():
            return self._graphed(video, t, text, **options)

    def release_graphs(self) -> None:
        """Free the CUDA graphs and the activation memory they hold (the model leaves the GPU)."""
        if self._graphed is not None:
            self._graphed.release()

    def _avatar_frames(self, avatar, chunks: int, frames: int, transformer_options: dict) -> torch.Tensor:
        if avatar is None:
            raise SamplingError(
                "the AMG model got no avatar video; pass the conditionings through AMG Avatar Conditioning "
                "before the sampler."
            )
        if avatar.shape[0] % chunks:
            raise SamplingError(
                f"the avatar latent has {avatar.shape[0]} frames for {chunks} conditionings; this is a bug."
            )
        all_frames = avatar.shape[0] // chunks
        if all_frames == frames:
            return avatar
        window = transformer_options.get("context_window")
        index = getattr(window, "index_list", None)
        if index is not None and len(index) == frames and max(index) < all_frames:
            avatar = avatar.reshape(chunks, all_frames, *avatar.shape[1:])[:, list(index)]
            return avatar.reshape(chunks * frames, *avatar.shape[2:])
        raise SamplingError(
            f"the avatar video has {all_frames} frames but the sampler denoises {frames}; use the LATENT of "
            "AMG Avatar Conditioning (one latent frame per avatar frame)."
        )

    def forward(self, x, timesteps, context=None, control=None, transformer_options={}, **kwargs):  # noqa: B006
        chunks = max(len(transformer_options.get("cond_or_uncond", ())), 1)
        if x.shape[0] % chunks:
            raise SamplingError(
                f"the sampler sent {x.shape[0]} latent frames for {chunks} conditionings; this is a bug."
            )
        frames = x.shape[0] // chunks
        avatar, same = kwargs.get(AVATAR_KEY), False
        if isinstance(avatar, AvatarChunks):
            avatar, same = avatar.latent, avatar.same
        avatar = self._avatar_frames(avatar, chunks, frames, transformer_options)
        xc = torch.cat([x, avatar.to(device=x.device, dtype=x.dtype)], dim=1)
        video = xc.reshape(chunks, frames, *xc.shape[1:]).transpose(1, 2)  # [chunks, 8, frames, h, w]
        t = timesteps.reshape(chunks, frames)[:, 0]
        text = context.reshape(chunks, frames, *context.shape[1:])[:, 0]
        eps = self._run_unet(video, t, text, chunks if same else 1)  # [chunks, 4, frames, h, w]
        return eps.transpose(1, 2).reshape(chunks * frames, *eps.shape[1:2], *eps.shape[3:])


def _plain_weights(layers: list[torch.nn.Module], device: torch.device, dtype: torch.dtype) -> bool:
    """True if no layer casts, offloads or patches its weights per call (ComfyUI's low-VRAM and
    manual-cast modes, LoRA weight functions) and the weights are on ``device`` in ``dtype``."""
    for m in layers:
        if m.comfy_cast_weights or m.weight_function or m.bias_function:
            return False
    return layers[0].weight.device == device and layers[0].weight.dtype == dtype


class AMGVideoModel(comfy.model_base.BaseModel):
    """ComfyUI model of AMG: the avatar latent comes with the conditioning as ``concat_latent_image``."""

    def __init__(self, model_config: AMGModelConfig, unet: AMGUNet, device=None):
        super().__init__(model_config, comfy.model_base.ModelType.EPS, device=device)
        self.diffusion_model = AMGDiffusionModel(unet)

    def extra_conds(self, **kwargs):
        cross_attn = kwargs.get("cross_attn")
        if cross_attn is not None:
            # On the compute device once per sampling run: from the CPU, ComfyUI would copy it at every
            # step, and a copy from pageable memory waits for the GPU to finish the previous step.
            kwargs["cross_attn"] = cross_attn.to(kwargs["device"])
        out = super().extra_conds(**kwargs)
        avatar = kwargs.get("concat_latent_image")
        noise = kwargs.get("noise")
        if avatar is None:
            raise SamplingError(
                "the conditioning has no avatar video; connect the positive and negative conditionings "
                "through AMG Avatar Conditioning before the sampler."
            )
        if avatar.shape[1:] != noise.shape[1:] or avatar.shape[0] != noise.shape[0]:
            raise SamplingError(
                f"the avatar latent is {list(avatar.shape)} but the sampled latent is {list(noise.shape)}; "
                "sample the LATENT that AMG Avatar Conditioning returns (same frames and size)."
            )
        out[AVATAR_KEY] = AvatarLatentCond(self._device_avatar(avatar, kwargs["device"]))
        return out

    def _device_avatar(self, avatar: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The scaled avatar latent on ``device``; the same tensor for conditionings that share one
        avatar (the positive and negative of AMG Avatar Conditioning), which the UNet can tell from
        its address (``AvatarChunks.same``)."""
        key = (avatar.shape, device)  # (ComfyUI's outputs are inference tensors, never edited in place)
        cached = getattr(self, "_avatar_cache", None)
        if cached is None or cached[0]() is not avatar or cached[1] != key:
            self._avatar_cache = (weakref.ref(avatar), key, self.process_latent_in(avatar.to(device)))
        return self._avatar_cache[2]


class FrameBatchContextHandler(comfy.context_windows.IndexListContextHandler):
    """ComfyUI's context windows over frames in the batch dimension (``dim=0``).

    ComfyUI 0.3.64 finds the current step by comparing ``sample_sigmas`` with the whole timestep
    tensor, which only broadcasts for batch 1 (the Wan layout, ``dim=2``); with one batch entry per
    frame every timestep is the same sigma, so the first one identifies the step.
    """

    def set_step(self, timestep, model_options):
        super().set_step(timestep.flatten()[:1], model_options)


def _frame_batch_context_windows(executor, x, timestep, model_options, seed):
    """PREDICT_NOISE wrapper: run a ``dim=0`` context-windows handler as ``FrameBatchContextHandler``."""
    handler = model_options.get("context_handler")
    if type(handler) is comfy.context_windows.IndexListContextHandler and handler.dim == 0:
        handler = copy.copy(handler)
        handler.__class__ = FrameBatchContextHandler
        model_options = {**model_options, "context_handler": handler}
    return executor(x, timestep, model_options, seed)


def wrap_unet(
    unet: AMGUNet,
    weight_dtype: torch.dtype,
    manual_cast_dtype: torch.dtype | None,
    load_device,
    offload_device,
) -> comfy.model_patcher.ModelPatcher:
    """Wrap a loaded ``AMGUNet`` (on ``offload_device``) as a ComfyUI MODEL."""
    from amg_model.model.channels_last import to_channels_last

    to_channels_last(unet)  # the CUDA fast path's convolutions read channels-last weights
    config = AMGModelConfig({"disable_unet_model_creation": True})
    config.set_inference_dtype(weight_dtype, manual_cast_dtype)
    _comfy_operations(
        unet, comfy.ops.pick_operations(weight_dtype, manual_cast_dtype, load_device=load_device)
    )
    model = AMGVideoModel(config, unet, device=offload_device)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)
    patcher.add_wrapper_with_key(
        comfy.patcher_extension.WrappersMP.PREDICT_NOISE,
        "amg_frame_batch_context_windows",
        _frame_batch_context_windows,
    )
    patcher.add_callback_with_key(
        comfy.patcher_extension.CallbacksMP.ON_DETACH, "amg_release_graphs", _release_graphs
    )
    return patcher


def _release_graphs(patcher: comfy.model_patcher.ModelPatcher, unpatch_all: bool) -> None:
    """ON_DETACH callback: when the weights leave the GPU, so does the memory of the CUDA graphs
    (ComfyUI empties the CUDA cache after unloading). A detach that keeps the weights in place (a
    clone of the patcher replaced by another, ``unpatch_all=False``) keeps the graphs."""
    if unpatch_all:
        patcher.model.diffusion_model.release_graphs()


class AMGLoadModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_LoadModel",
            display_name="AMG Load Model",
            category="AMG/loaders",
            description="Loads the AMG video UNet from models/amg (the released .pth or a converted "
            ".safetensors) as a MODEL for the stock KSampler.",
            inputs=[
                io.Combo.Input(
                    "unet_name",
                    options=edges.model_files(edges.AMG_FOLDER),
                    tooltip="AMG UNet file in models/amg: non_ema_0640000.pth or a converted .safetensors.",
                ),
                io.Combo.Input(
                    "weight_dtype",
                    options=edges.UNET_DTYPE_OPTIONS,
                    default="auto",
                    tooltip="Precision of the weights in memory; auto lets ComfyUI choose for your device.",
                ),
            ],
            outputs=[
                io.Model.Output(
                    tooltip="The AMG model; sample it with KSampler (ddim + ddim_uniform is the original)."
                )
            ],
        )

    @classmethod
    def validate_inputs(cls, unet_name, weight_dtype="auto"):
        if unet_name not in edges.model_files(edges.AMG_FOLDER):
            return f"{unet_name} is not in models/amg; put the AMG checkpoint there and refresh."
        return True

    @classmethod
    def execute(cls, unet_name, weight_dtype="auto") -> io.NodeOutput:
        path = edges.model_file_path(edges.AMG_FOLDER, unet_name)
        load_device = comfy.model_management.get_torch_device()
        offload_device = comfy.model_management.unet_offload_device()
        dtype, manual_cast = edges.unet_dtypes(weight_dtype, path, load_device)
        from amg_model.model.checkpoint import load_unet  # imports diffusers: only when a model loads

        unet = load_unet(path, device=offload_device, dtype=dtype)
        return io.NodeOutput(wrap_unet(unet, dtype, manual_cast, load_device, offload_device))
