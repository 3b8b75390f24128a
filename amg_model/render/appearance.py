"""Per-person appearance: clothing colours by body region, gentle fabric variation, optional texture.

AMG was trained on renders of textured, clothed people; flat grey bodies are far from that. An
``Appearance`` paints the body-part regions of ``amg_model.smpl.body.vertex_regions`` (skin, hair,
top, bottom, shoes) and adds low-frequency colour variation so surfaces do not look like clay.
A user texture (per-vertex uv + image) replaces the colours where given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from amg_model.errors import RenderError

RGB = tuple[float, float, float]

# Body regions (amg_model.smpl.landmarks.REGION_*): 0 skin-head, 1 hair, 2 torso, 3 upper arms,
# 4 forearms, 5 hands, 6 hips, 7 thighs, 8 shins, 9 feet.
NUM_REGIONS = 10

PRESETS = ("casual", "formal", "sport", "random")

_SKINS: tuple[RGB, ...] = (
    (0.93, 0.76, 0.64), (0.80, 0.60, 0.47), (0.62, 0.44, 0.32), (0.45, 0.31, 0.22), (0.88, 0.68, 0.55),
)  # fmt: skip
_HAIRS: tuple[RGB, ...] = (
    (0.10, 0.07, 0.05), (0.30, 0.18, 0.10), (0.62, 0.48, 0.28), (0.05, 0.05, 0.06), (0.45, 0.25, 0.12),
)  # fmt: skip
_PALETTES: dict[str, dict[str, tuple[RGB, ...]]] = {
    "casual": {
        "top": ((0.92, 0.92, 0.90), (0.20, 0.34, 0.62), (0.78, 0.22, 0.20), (0.95, 0.80, 0.22),
                (0.30, 0.55, 0.36), (0.55, 0.35, 0.60)),
        "bottom": ((0.20, 0.28, 0.45), (0.68, 0.60, 0.44), (0.42, 0.43, 0.46), (0.12, 0.12, 0.14)),
        "shoes": ((0.88, 0.88, 0.86), (0.35, 0.22, 0.12), (0.10, 0.10, 0.10)),
    },
    "formal": {
        "top": ((0.16, 0.18, 0.24), (0.93, 0.93, 0.92), (0.30, 0.30, 0.32), (0.45, 0.12, 0.15),
                (0.62, 0.70, 0.82)),
        "bottom": ((0.10, 0.11, 0.14), (0.22, 0.22, 0.25), (0.35, 0.30, 0.25)),
        "shoes": ((0.06, 0.06, 0.06), (0.25, 0.14, 0.08)),
    },
    "sport": {
        "top": ((0.85, 0.15, 0.15), (0.10, 0.45, 0.85), (0.98, 0.55, 0.10), (0.10, 0.65, 0.60),
                (0.95, 0.95, 0.95), (0.20, 0.20, 0.22)),
        "bottom": ((0.10, 0.10, 0.12), (0.15, 0.20, 0.45), (0.50, 0.50, 0.52), (0.90, 0.90, 0.90)),
        "shoes": ((0.95, 0.95, 0.95), (0.15, 0.15, 0.15), (0.90, 0.30, 0.20)),
    },
}  # fmt: skip
_STYLE = {"casual": ("short", "long"), "formal": ("long", "long"), "sport": ("short", "shorts")}


@dataclass
class Appearance:
    """The look of one avatar.

    Attributes:
        skin, hair, top, bottom, shoes: RGB colours in 0..1.
        sleeves: "short" (forearms show skin) or "long" (forearms wear the top).
        legs: "long" (shins wear the bottom) or "shorts" (shins show skin).
        variation: amplitude of the low-frequency brightness and hue variation (0 = flat colours).
        seed: seed of that variation, so different persons vary differently.
        uv: optional [V, 2] texture coordinates (u right, v down, 0..1) of the body's vertices.
        texture: optional [H, W, 3] image in 0..1; with ``uv`` it replaces the colours.
    """

    skin: RGB = _SKINS[0]
    hair: RGB = _HAIRS[0]
    top: RGB = _PALETTES["casual"]["top"][1]
    bottom: RGB = _PALETTES["casual"]["bottom"][0]
    shoes: RGB = _PALETTES["casual"]["shoes"][0]
    sleeves: str = "short"
    legs: str = "long"
    variation: float = 0.08
    seed: int = 0
    uv: torch.Tensor | None = None
    texture: torch.Tensor | None = None

    def validate(self, source: str = "appearance") -> None:
        """Raise RenderError naming ``source`` if a field cannot be used."""
        for name in ("skin", "hair", "top", "bottom", "shoes"):
            rgb = getattr(self, name)
            if len(rgb) != 3 or not all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in rgb):
                raise RenderError(f"{source}: {name} colour {rgb} must be three numbers from 0 to 1.")
        if self.sleeves not in ("short", "long"):
            raise RenderError(f"{source}: sleeves is {self.sleeves!r}; use 'short' or 'long'.")
        if self.legs not in ("long", "shorts"):
            raise RenderError(f"{source}: legs is {self.legs!r}; use 'long' or 'shorts'.")
        if (self.uv is None) != (self.texture is None):
            raise RenderError(f"{source}: give both a uv layout and a texture image, or neither.")


def appearance_preset(name: str = "casual", index: int = 0, seed: int = 0) -> Appearance:
    """A preset look; ``index`` (the person's number) picks different colours for each person.

    Args:
        name: "casual", "formal", "sport" or "random" (random colours from ``seed`` and ``index``).
        index: person number; persons 0, 1, 2, ... get distinct combinations.
        seed: changes the colour choice and the fabric variation.
    """
    if name not in PRESETS:
        raise RenderError(f"Appearance preset {name!r} is unknown; use one of {PRESETS}.")
    gen = torch.Generator().manual_seed(1009 * seed + index)
    if name == "random":

        def rand_rgb() -> RGB:
            hsv = torch.rand(3, generator=gen) * torch.tensor([1.0, 0.7, 0.75]) + torch.tensor([0, 0.15, 0.2])
            return _hsv_to_rgb(*hsv.tolist())

        pick = torch.randint(0, 1000, (4,), generator=gen).tolist()
        return Appearance(
            skin=_SKINS[pick[0] % len(_SKINS)], hair=_HAIRS[pick[1] % len(_HAIRS)],
            top=rand_rgb(), bottom=rand_rgb(), shoes=rand_rgb(),
            sleeves=("short", "long")[pick[2] % 2], legs=("long", "shorts")[pick[3] % 4 // 3],
            seed=seed * 7919 + index,
        )  # fmt: skip
    palette = _PALETTES[name]
    # Step through each list with a different stride so neighbours differ in every part.
    shift = seed * 13
    sleeves, legs = _STYLE[name]
    return Appearance(
        skin=_SKINS[(index * 2 + shift) % len(_SKINS)],
        hair=_HAIRS[(index * 3 + shift) % len(_HAIRS)],
        top=palette["top"][(index + shift) % len(palette["top"])],
        bottom=palette["bottom"][(index * 3 + shift) % len(palette["bottom"])],
        shoes=palette["shoes"][(index + shift) % len(palette["shoes"])],
        sleeves=sleeves, legs=legs, seed=seed * 7919 + index,
    )  # fmt: skip


def region_colors(appearance: Appearance) -> torch.Tensor:
    """[NUM_REGIONS, 3] colour of every body region under ``appearance``."""
    a = appearance
    forearm = a.top if a.sleeves == "long" else a.skin
    shin = a.bottom if a.legs == "long" else a.skin
    table = (a.skin, a.hair, a.top, a.top, forearm, a.skin, a.bottom, a.bottom, shin, a.shoes)
    return torch.tensor(table, dtype=torch.float32)


def vertex_colors(appearance: Appearance, regions: torch.Tensor, rest_vertices: torch.Tensor) -> torch.Tensor:
    """Per-vertex albedo of one body.

    Args:
        appearance: the look.
        regions: [V] long body region per vertex (``vertex_regions`` of the body model).
        rest_vertices: [V, 3] vertex positions in metres (rest pose), the domain of the variation,
            so the pattern sticks to the body while it moves.

    Returns:
        [V, 3] colours in 0..1 on the device of ``regions``.
    """
    appearance.validate()
    if regions.ndim != 1 or rest_vertices.shape != (regions.shape[0], 3):
        raise RenderError(
            f"Body regions {tuple(regions.shape)} and rest vertices {tuple(rest_vertices.shape)} "
            "do not describe the same vertices."
        )
    device = regions.device
    base = region_colors(appearance).to(device)[regions.clamp(0, NUM_REGIONS - 1)]
    if appearance.variation <= 0:
        return base
    # Low-frequency noise: a few random plane waves (wavelengths 6-40 cm) of the rest position;
    # brightness varies most, hue a little (folds, wear and dye of real clothes).
    gen = torch.Generator().manual_seed(appearance.seed)
    n_waves = 12
    dirs = torch.nn.functional.normalize(torch.randn(n_waves, 3, generator=gen), dim=1)
    freq = 2 * math.pi / (0.06 + 0.34 * torch.rand(n_waves, generator=gen))
    phase = 2 * math.pi * torch.rand(n_waves, generator=gen)
    amp = torch.rand(n_waves, 4, generator=gen) - 0.5
    waves = torch.sin(rest_vertices.float().cpu() @ (dirs * freq[:, None]).T + phase)  # [V, n]
    noise = (waves @ amp) / math.sqrt(n_waves / 8)  # [V, 4], about unit scale
    brightness = 1.0 + appearance.variation * noise[:, :1]
    tint = 1.0 + 0.3 * appearance.variation * noise[:, 1:]
    return (base * (brightness * tint).to(device)).clamp(0.0, 1.0)


def _hsv_to_rgb(h: float, s: float, v: float) -> RGB:
    """One HSV colour (all 0..1) to RGB."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))[i]
