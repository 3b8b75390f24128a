"""Motion: the SMPL-family parameters of one or more persons over time.

Conventions (the same everywhere in the library):
- world frame y-up, metres; a person standing at the origin faces +z;
- rotations are rotation matrices in memory ([..., 3, 3]) and axis-angle in files;
- ``body_pose`` holds the local rotations of the body joints after the pelvis:
  23 joints for ``smpl`` and ``mannequin`` (the SMPL skeleton), 21 for ``smplh``/``smplx``
  (their hands are in ``left_hand_pose``/``right_hand_pose``, 15 joints each).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from amg_model.errors import MotionError

BODY_TYPES = ("smpl", "smplh", "smplx", "mannequin")
GENDERS = ("neutral", "male", "female")
BODY_JOINTS = {"smpl": 23, "mannequin": 23, "smplh": 21, "smplx": 21}


@dataclass
class Person:
    """One person's body parameters over F frames.

    Attributes:
        body_type: "smpl", "smplh", "smplx" or "mannequin".
        gender: "neutral", "male" or "female".
        betas: [B] shape coefficients, shared by all frames.
        global_orient: [F, 3, 3] pelvis rotation, body to world.
        body_pose: [F, J, 3, 3] local body-joint rotations (J from BODY_JOINTS).
        transl: [F, 3] translation in metres, added to the posed body (as smplx does).
        left_hand_pose / right_hand_pose: [F, 15, 3, 3] or None (SMPL-H/X only).
        jaw_pose: [F, 3, 3] or None; expression: [F, E] or None (SMPL-X only).
        name: free label, e.g. a track id.
    """

    body_type: str
    gender: str
    betas: torch.Tensor
    global_orient: torch.Tensor
    body_pose: torch.Tensor
    transl: torch.Tensor
    left_hand_pose: torch.Tensor | None = None
    right_hand_pose: torch.Tensor | None = None
    jaw_pose: torch.Tensor | None = None
    expression: torch.Tensor | None = None
    name: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.global_orient.shape[0])

    def frame_tensors(self) -> dict[str, torch.Tensor]:
        """The per-frame tensors (all with F leading), by field name; None fields left out."""
        names = (
            "global_orient", "body_pose", "transl", "left_hand_pose", "right_hand_pose",
            "jaw_pose", "expression",
        )  # fmt: skip
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def map_frames(self, fn) -> Person:
        """A copy with ``fn`` applied to every per-frame tensor (e.g. indexing frames)."""
        return replace(self, **{k: fn(v) for k, v in self.frame_tensors().items()})

    def validate(self, source: str = "motion") -> None:
        """Raise MotionError naming ``source`` if shapes or values are inconsistent."""
        who = f"{source}: person {self.name or '?'}"
        if self.body_type not in BODY_TYPES:
            raise MotionError(f"{who} has body type {self.body_type!r}; use one of {BODY_TYPES}.")
        if self.gender not in GENDERS:
            raise MotionError(f"{who} has gender {self.gender!r}; use one of {GENDERS}.")
        f = self.num_frames
        if f == 0:
            raise MotionError(f"{who} has no frames.")
        j = BODY_JOINTS[self.body_type]
        expected = {
            "global_orient": (f, 3, 3), "body_pose": (f, j, 3, 3), "transl": (f, 3),
            "left_hand_pose": (f, 15, 3, 3), "right_hand_pose": (f, 15, 3, 3), "jaw_pose": (f, 3, 3),
        }  # fmt: skip
        for name, shape in expected.items():
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != shape:
                raise MotionError(
                    f"{who}: {name} has shape {tuple(t.shape)}, expected {shape} for {self.body_type}."
                )
        if self.betas.ndim != 1:
            raise MotionError(f"{who}: betas must be one vector, got shape {tuple(self.betas.shape)}.")
        for name, t in {"betas": self.betas, **self.frame_tensors()}.items():
            if not torch.isfinite(t).all():
                raise MotionError(f"{who}: {name} contains NaN or infinite values.")


@dataclass
class Motion:
    """One or more persons moving together, sampled at ``fps`` frames per second."""

    persons: list[Person] = field(default_factory=list)
    fps: float = 30.0

    @property
    def num_frames(self) -> int:
        return max((p.num_frames for p in self.persons), default=0)

    def validate(self, source: str = "motion") -> None:
        """Raise MotionError naming ``source`` if the motion cannot be used."""
        if not self.persons:
            raise MotionError(f"{source} has no persons.")
        if not self.fps > 0:
            raise MotionError(f"{source} has frame rate {self.fps}; it must be positive.")
        counts = {p.num_frames for p in self.persons}
        if len(counts) > 1:
            raise MotionError(
                f"{source}: persons have different frame counts {sorted(counts)}; trim or loop them first."
            )
        for p in self.persons:
            p.validate(source)
