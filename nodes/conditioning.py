"""Attaching the avatar video to the text conditionings (the Wan image-to-video pattern)."""

from __future__ import annotations

import comfy.model_management
import node_helpers
import torch
from comfy_api.latest import io

from . import edges


class AMGAvatarConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AMG_AvatarConditioning",
            display_name="AMG Avatar Conditioning",
            category="AMG/conditioning",
            description="VAE-encodes the avatar render video and attaches it to both conditionings; returns "
            "the empty LATENT (one latent frame per avatar frame) to sample.",
            inputs=[
                io.Conditioning.Input(
                    "positive", tooltip="Text conditioning of the prompt (CLIPTextEncode)."
                ),
                io.Conditioning.Input(
                    "negative", tooltip="Text conditioning of the negative prompt; AMG used an empty prompt."
                ),
                io.Vae.Input("vae", tooltip="The Stable Diffusion 2.1 VAE (the SD KL-f8 VAE)."),
                io.Image.Input(
                    "avatar_video",
                    tooltip="Rendered avatar frames [frames, H, W, 3]; H and W multiples of 8.",
                ),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive"),
                io.Conditioning.Output(display_name="negative"),
                io.Latent.Output(
                    display_name="latent", tooltip="Empty latent [frames, 4, H/8, W/8] to sample."
                ),
            ],
        )

    @classmethod
    def execute(cls, positive, negative, vae, avatar_video) -> io.NodeOutput:
        frames = edges.video_frames(avatar_video)
        avatar_latent = vae.encode(frames)  # ComfyUI's VAE: frame by frame, in batches that fit memory
        latent = torch.zeros_like(avatar_latent, device=comfy.model_management.intermediate_device())
        values = {"concat_latent_image": avatar_latent}
        positive = node_helpers.conditioning_set_values(positive, values)
        negative = node_helpers.conditioning_set_values(negative, values)
        return io.NodeOutput(positive, negative, {"samples": latent})
