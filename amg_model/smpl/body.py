"""Body models: the common interface, SMPL / SMPL-H / SMPL-X files run through smplx, and loading.

Every body model maps SMPL-style pose parameters (rotation matrices) to a posed mesh and the
SMPL 24-joint skeleton, in the library's world frame (y-up, metres, facing +z at rest).
``load_body_model("mannequin")`` gives the built-in mannequin (no licensed file needed);
``load_body_model(path)`` reads an SMPL-family model file safely (``.pkl`` through the restricted
unpickler, ``.npz`` without pickle) and builds the matching ``smplx`` layer from the arrays, so
smplx never opens the user's file itself.

Joints of SMPL-H and SMPL-X are reported in SMPL's 24-joint order: their 22 body joints, then for
SMPL's ``left_hand``/``right_hand`` the ``left_middle1``/``right_middle1`` joints (the base of the
middle finger, in the middle of the knuckle row, where SMPL places its hand joint).

Translation convention (all body types, as smplx): ``transl`` is added to the posed body, whose
pelvis stays at its rest position. The rest pelvis of SMPL-family models is near the origin;
the mannequin's is at its hip height (its feet stand on y = 0), see ``rest_joints``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from amg_model.errors import BodyModelError
from amg_model.smpl.landmarks import regions_from_weights
from amg_model.smpl.motion import GENDERS, Person

logger = logging.getLogger(__name__)

# Layouts by (vertex count, joint count).
LAYOUTS = {(6890, 24): "smpl", (6890, 52): "smplh", (10475, 55): "smplx"}
_HAND_JOINTS = 15


@dataclass
class BodyOutput:
    """A posed body.

    Attributes:
        vertices: [N, V, 3] posed mesh vertices, world frame, metres (transl included).
        joints: [N, 24, 3] joints in SMPL 24-joint order (kinematics.SMPL_JOINT_NAMES), world.
        face_landmarks: [N, 5, 3] nose, right_eye, left_eye, right_ear, left_ear, world.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    face_landmarks: torch.Tensor


class BodyModel(torch.nn.Module):
    """Interface shared by every body model (mannequin, SMPL, SMPL-H, SMPL-X).

    Attributes:
        body_type: "smpl", "smplh", "smplx" or "mannequin".
        gender: "neutral", "male" or "female".
        num_betas: number of shape coefficients ``forward`` uses (shorter betas are zero-padded,
            longer ones truncated).
        num_body_joints: 23 (smpl, mannequin) or 21 (smplh, smplx): joints in ``body_pose``.
        faces: [T, 3] long buffer, triangle vertex indices.
        lbs_weights: [V, J] buffer, skinning weights (J = 24 smpl/mannequin, 52 smplh,
            55 smplx; the first 22 columns follow SMPL joint order).

    Device and dtype come from the buffers: ``model.to("cuda", torch.float64)`` moves them all.
    Everything is differentiable with respect to the pose and shape inputs.
    """

    body_type: str
    gender: str
    num_betas: int
    num_body_joints: int
    faces: torch.Tensor
    lbs_weights: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.lbs_weights.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lbs_weights.dtype

    @property
    def num_vertices(self) -> int:
        return int(self.lbs_weights.shape[0])

    def forward(
        self,
        betas: torch.Tensor,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        transl: torch.Tensor,
        left_hand_pose: torch.Tensor | None = None,
        right_hand_pose: torch.Tensor | None = None,
        jaw_pose: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
    ) -> BodyOutput:
        """Pose the body.

        Args:
            betas: [N, B] shape coefficients (or [1, B], broadcast over N).
            global_orient: [N, 3, 3] pelvis rotation, body to world.
            body_pose: [N, num_body_joints, 3, 3] local joint rotations.
            transl: [N, 3] metres, added to the posed body.
            left_hand_pose / right_hand_pose: [N, 15, 3, 3] (SMPL-H/X; others ignore them).
            jaw_pose: [N, 3, 3]; expression: [N, E] (SMPL-X; others ignore them).

        Returns:
            BodyOutput with N bodies.
        """
        raise NotImplementedError

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """Joints of the unposed body of shape ``betas`` [N, B]: [N, 24, 3], SMPL order, no transl."""
        raise NotImplementedError

    def pose_person(self, person: Person, frames: slice | None = None) -> BodyOutput:
        """Pose one person over its frames (or ``frames`` of them); betas are shared by all frames.

        A person of another body type is adapted: SMPL-style 23-joint poses lose their two hand
        joints on SMPL-H/X bodies, 21-joint poses get identity hand joints on SMPL/mannequin
        bodies; hand, jaw and expression inputs are passed only to bodies that have them.
        """
        p = person if frames is None else person.map_frames(lambda t: t[frames])
        n = p.num_frames
        kw = {"device": self.device, "dtype": self.dtype}
        body_pose = p.body_pose.to(**kw)
        jb = self.num_body_joints
        if body_pose.shape[1] > jb:
            body_pose = body_pose[:, :jb]
        elif body_pose.shape[1] < jb:
            eye = torch.eye(3, **kw).expand(n, jb - body_pose.shape[1], 3, 3)
            body_pose = torch.cat([body_pose, eye], dim=1)

        def opt(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(**kw)

        return self(
            betas=p.betas.to(**kw)[None].expand(n, -1),
            global_orient=p.global_orient.to(**kw),
            body_pose=body_pose,
            transl=p.transl.to(**kw),
            left_hand_pose=opt(p.left_hand_pose),
            right_hand_pose=opt(p.right_hand_pose),
            jaw_pose=opt(p.jaw_pose),
            expression=opt(p.expression),
        )

    def _check_inputs(
        self, betas: torch.Tensor, global_orient: torch.Tensor, body_pose: torch.Tensor, transl: torch.Tensor
    ) -> torch.Tensor:
        """Validate the common inputs; return betas [N, num_betas] on the model's dtype."""
        n = global_orient.shape[0]
        expected = {
            "global_orient": (global_orient, (n, 3, 3)),
            "body_pose": (body_pose, (n, self.num_body_joints, 3, 3)),
            "transl": (transl, (n, 3)),
        }
        for name, (t, shape) in expected.items():
            if tuple(t.shape) != shape:
                raise BodyModelError(
                    f"{self.body_type} body: {name} has shape {tuple(t.shape)}, expected {shape}; "
                    "pass rotation matrices with one row per frame."
                )
        if betas.ndim != 2 or betas.shape[0] not in (1, n):
            raise BodyModelError(
                f"{self.body_type} body: betas has shape {tuple(betas.shape)}, expected [{n}, B] or [1, B]."
            )
        return fit_betas(betas, self.num_betas).expand(n, -1)


def fit_betas(betas: torch.Tensor, num_betas: int) -> torch.Tensor:
    """Zero-pad or truncate betas [N, B] to [N, num_betas]."""
    b = betas.shape[-1]
    if b >= num_betas:
        return betas[..., :num_betas]
    return torch.cat([betas, betas.new_zeros(*betas.shape[:-1], num_betas - b)], dim=-1)


def load_body_model(
    source: str | Path = "mannequin", gender: str = "neutral", device: str | torch.device = "cpu",
    num_betas: int = 10,
) -> BodyModel:  # fmt: skip
    """Load a body model: ``"mannequin"`` (built in, not SMPL) or an SMPL-family model file."""
    if gender not in GENDERS:
        raise BodyModelError(f"Body model gender {gender!r} is unknown; use one of {GENDERS}.")
    if str(source) == "mannequin":
        from amg_model.smpl.mannequin import Mannequin

        return Mannequin(gender=gender, num_betas=num_betas).to(device)
    raise BodyModelError(f"{source}: SMPL-family files are not supported yet; use 'mannequin'.")


def vertex_regions(body: BodyModel) -> torch.Tensor:
    """Body-part region of every vertex of ``body``: [V] long (landmarks.REGION_* values)."""
    kw = {"device": body.device, "dtype": body.dtype}
    eye = torch.eye(3, **kw)
    with torch.no_grad():
        out = body(
            torch.zeros(1, body.num_betas, **kw), eye[None], eye.expand(1, body.num_body_joints, 3, 3),
            torch.zeros(1, 3, **kw),
        )  # fmt: skip
    return regions_from_weights(body.lbs_weights, out.vertices[0], out.face_landmarks[0]).to(body.device)
