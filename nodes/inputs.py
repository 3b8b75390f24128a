"""Schema inputs shared by several nodes (same names, ranges and steps everywhere)."""

from __future__ import annotations

from comfy_api.latest import io


def size_inputs(default: int = 256) -> list:
    """``width`` and ``height`` in pixels, multiples of 8."""
    return [
        io.Int.Input("width", default=default, min=8, max=4096, step=8, tooltip="Image width in pixels."),
        io.Int.Input("height", default=default, min=8, max=4096, step=8, tooltip="Image height in pixels."),
    ]


def size_override_inputs(
    width_tooltip: str, height_tooltip: str, names: tuple[str, str] = ("width", "height"), max_px: int = 4096
) -> list:
    """An optional image size: two pixel counts, multiples of 8, where 0 keeps the input's own size."""
    return [
        io.Int.Input(name, default=0, min=0, max=max_px, step=8, tooltip=tip)
        for name, tip in zip(names, (width_tooltip, height_tooltip), strict=True)
    ]
