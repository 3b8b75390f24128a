"""Comparing a state dict with the tensors a model expects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch


@dataclass
class KeyMismatch:
    """Keys of a state dict that do not fit a model: each list sorted by key."""

    missing: list[str]
    unexpected: list[str]
    wrong_shape: list[str]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)


def compare_keys(expected: Mapping[str, torch.Size], state_dict: Mapping[str, torch.Tensor]) -> KeyMismatch:
    """Which keys of ``state_dict`` are missing, unexpected or of the wrong shape for ``expected``."""
    return KeyMismatch(
        missing=sorted(set(expected) - set(state_dict)),
        unexpected=sorted(set(state_dict) - set(expected)),
        wrong_shape=sorted(k for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k]),
    )
