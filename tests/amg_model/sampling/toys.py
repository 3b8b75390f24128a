"""Toy epsilon models for the sampling tests, built in code."""

from __future__ import annotations

import torch


class FrameLocalToy(torch.nn.Module):
    """Analytic eps model whose output at a frame depends only on that frame (and t, context).

    ``(x [N, 8, F, h, w], t [N], context [N, L, D]) -> eps [N, 4, F, h, w]``; records the frame counts seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.frames_seen: list[int] = []
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.frames_seen.append(x.shape[2])
        noisy, avatar = x[:, :4], x[:, 4:]
        scale = (1.0 + t.to(x.dtype) / 1000.0).view(-1, 1, 1, 1, 1)
        ctx = context.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)
        frame_mean = noisy.mean(dim=(1, 3, 4), keepdim=True)
        return torch.tanh(0.5 * noisy + 0.3 * avatar + ctx) * scale + 0.1 * frame_mean


def tiny_diffusers_unet(context_dim: int = 16) -> torch.nn.Module:
    """A random-weight diffusers UNet3DConditionModel (8 in, 4 out) wrapped to ``(x, t, context)``."""
    from diffusers import UNet3DConditionModel

    torch.manual_seed(0)
    net = UNet3DConditionModel(
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=context_dim,
        attention_head_dim=4,
    ).eval()

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
            return self.net(x, t, context).sample

    return Wrapped()
