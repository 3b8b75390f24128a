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
pelvis stays at its rest position. The rest pelvis of SMPL-family models is near the origin,
and so is the mannequin's (``mannequin.REST_PELVIS``), so one motion places every body type in
the same spot; see ``rest_joints``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.lbs import blend_shapes, vertices2joints
from smplx.utils import Struct

from amg_model.errors import BodyModelError
from amg_model.smpl.landmarks import FACE_LANDMARK_VERTEX_IDS, SMPL_JOINTS_OF, regions_from_weights
from amg_model.smpl.motion import BODY_JOINTS, GENDERS, Person
from amg_model.smpl.unpickle import load_pickle

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


class SmplFamilyBody(BodyModel):
    """An SMPL, SMPL-H or SMPL-X model file, evaluated by the matching ``smplx`` layer.

    Hands are posed with rotation matrices (no PCA, flat hand mean); SMPL-X expressions use the
    file's expression space (10 coefficients). ``num_betas`` is the smaller of the request and
    the file's shape space.
    """

    def __init__(self, layer: torch.nn.Module, body_type: str, gender: str):
        super().__init__()
        self.layer = layer
        self.body_type = body_type
        self.gender = gender
        self.num_betas = int(layer.num_betas)
        self.num_body_joints = BODY_JOINTS[body_type]
        self.register_buffer("landmark_ids", torch.tensor(FACE_LANDMARK_VERTEX_IDS[body_type]))
        self.register_buffer("smpl_joint_ids", torch.tensor(SMPL_JOINTS_OF[body_type]))

    @property
    def faces(self) -> torch.Tensor:  # the layer's buffer
        return self.layer.faces_tensor

    @property
    def lbs_weights(self) -> torch.Tensor:  # the layer's buffer
        return self.layer.lbs_weights

    def extra_repr(self) -> str:
        return f"{self.body_type}, {self.gender}, {self.num_vertices} vertices, {self.num_betas} betas"

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
        betas = self._check_inputs(betas, global_orient, body_pose, transl)
        n, kw = global_orient.shape[0], {"device": self.device, "dtype": self.dtype}
        args = {
            "betas": betas.to(**kw),
            "global_orient": global_orient.to(**kw)[:, None],
            "body_pose": body_pose.to(**kw),
            "transl": transl.to(**kw),
        }
        if self.body_type in ("smplh", "smplx"):
            for name, t in (("left_hand_pose", left_hand_pose), ("right_hand_pose", right_hand_pose)):
                if t is None:
                    t = torch.eye(3, **kw).expand(n, _HAND_JOINTS, 3, 3)
                elif tuple(t.shape) != (n, _HAND_JOINTS, 3, 3):
                    raise BodyModelError(
                        f"{self.body_type} body: {name} has shape {tuple(t.shape)}, expected {(n, 15, 3, 3)}."
                    )
                args[name] = t.to(**kw)
        if self.body_type == "smplx":
            args["jaw_pose"] = (
                torch.eye(3, **kw).expand(n, 3, 3) if jaw_pose is None else jaw_pose.to(**kw)
            )[:, None]
            num_expr = int(self.layer.num_expression_coeffs)
            expr = torch.zeros(n, num_expr, **kw) if expression is None else expression.to(**kw)
            args["expression"] = fit_betas(expr.expand(n, -1), num_expr)
        out = self.layer(**args)
        vertices = out.vertices
        return BodyOutput(
            vertices=vertices,
            joints=out.joints[:, self.smpl_joint_ids],
            face_landmarks=vertices[:, self.landmark_ids],
        )

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        betas = fit_betas(betas.to(device=self.device, dtype=self.dtype), self.num_betas)
        shaped = self.layer.v_template + blend_shapes(betas, self.layer.shapedirs)
        return vertices2joints(self.layer.J_regressor, shaped)[:, self.smpl_joint_ids]


def load_body_model(
    source: str | Path = "mannequin",
    gender: str = "neutral",
    device: str | torch.device = "cpu",
    num_betas: int = 10,
) -> BodyModel:
    """Load a body model.

    Args:
        source: "mannequin" (built in, not SMPL, needs no file) or the path of an SMPL
            (6890 vertices, 24 joints), SMPL-H (6890, 52) or SMPL-X (10475, 55) model file,
            ``.pkl`` (official SMPL/SMPL-H/SMPL-X pickles, read without running code) or ``.npz``
            (read without pickle). The type is detected from the array shapes.
        gender: "neutral", "male" or "female"; for files, a name containing "female", "male" or
            "neutral" (e.g. SMPLX_FEMALE.npz) overrides it, since the file decides the body.
        device: where the buffers go; dtype is float32 (``.to`` converts).
        num_betas: shape coefficients to use (at most what the file has).

    Raises:
        BodyModelError naming the file when it is missing, not a body model, of an unknown
        layout, truncated or damaged.
    """
    if gender not in GENDERS:
        raise BodyModelError(f"Body model gender {gender!r} is unknown; use one of {GENDERS}.")
    if str(source).lower() == "mannequin":
        from amg_model.smpl.mannequin import Mannequin

        return Mannequin(gender=gender, num_betas=num_betas).to(device)
    path = Path(source)
    body_type, arrays = read_body_model_file(path)
    gender = _gender_from_name(path.name) or gender
    layer = _build_layer(path, body_type, arrays, gender, num_betas)
    logger.info("Loaded %s body model %s (%s)", body_type, path.name, gender)
    return SmplFamilyBody(layer, body_type, gender).to(device)


_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "f", "kintree_table")


def read_body_model_file(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """Read and check the arrays of an SMPL-family model file.

    Returns:
        (body_type, arrays): "smpl", "smplh" or "smplx", and every numeric array of the file
        (chumpy and sparse matrices densified; object arrays of ``.npz`` files skipped).
    """
    path = Path(path)
    if not path.is_file():
        raise BodyModelError(
            f"{path}: body model file not found; put SMPL-family files in ComfyUI/models/smpl "
            "or use the built-in 'mannequin'."
        )
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        data = load_pickle(path)
    elif suffix == ".npz":
        data = _read_npz(path)
    else:
        raise BodyModelError(
            f"{path.name}: unsupported body model file type; use an SMPL-family .pkl or .npz."
        )
    if not isinstance(data, dict):
        raise BodyModelError(
            f"{path.name}: not a body model file (holds a {type(data).__name__}, not named arrays)."
        )
    arrays = {}
    for k, v in data.items():
        try:
            a = np.asarray(v)
        except (ValueError, TypeError):
            continue
        if a.dtype.kind in "fiub":
            arrays[str(k)] = a
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise BodyModelError(
            f"{path.name}: not an SMPL/SMPL-H/SMPL-X body model file (missing {', '.join(missing)}); "
            "download the model from its official site."
        )
    n_verts, n_joints = int(arrays["v_template"].shape[0]), int(arrays["weights"].shape[-1])
    body_type = LAYOUTS.get((n_verts, n_joints))
    if body_type is None:
        raise BodyModelError(
            f"{path.name}: unknown body model layout ({n_verts} vertices, {n_joints} joints); "
            "use SMPL (6890, 24), SMPL-H (6890, 52) or SMPL-X (10475, 55) files."
        )
    _check_shapes(path, arrays, n_verts, n_joints)
    return body_type, arrays


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    out = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for k in npz.files:
                try:
                    out[k] = npz[k]
                except ValueError:  # an object array (e.g. SMPL-X's part2num); not needed
                    logger.debug("%s: skipping pickled entry %s", path.name, k)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise BodyModelError(
            f"{path.name}: truncated or not an .npz file ({e}); download it again."
        ) from None
    return out


def _check_shapes(path: Path, a: dict[str, np.ndarray], n_verts: int, n_joints: int) -> None:
    expected = {
        "v_template": (n_verts, 3),
        "weights": (n_verts, n_joints),
        "J_regressor": (n_joints, n_verts),
        "kintree_table": (2, n_joints),
        "posedirs": (n_verts, 3, (n_joints - 1) * 9),
    }
    for key, shape in expected.items():
        if a[key].shape != shape:
            raise BodyModelError(
                f"{path.name}: {key} has shape {a[key].shape}, expected {shape}; the file is damaged, "
                "download it again."
            )
    sd, f = a["shapedirs"], a["f"]
    if sd.ndim != 3 or sd.shape[:2] != (n_verts, 3) or sd.shape[2] < 1:
        raise BodyModelError(f"{path.name}: shapedirs has shape {sd.shape}, expected ({n_verts}, 3, B).")
    if f.ndim != 2 or f.shape[1] != 3 or f.size == 0 or int(f.max()) >= n_verts or int(f.min()) < 0:
        raise BodyModelError(
            f"{path.name}: faces 'f' are not triangles of the {n_verts} vertices; download it again."
        )


def _gender_from_name(name: str) -> str | None:
    """Gender a file name states: SMPLX_FEMALE.npz, basicModel_f_lbs_10_207_0_v1.0.0.pkl, ..."""
    low = name.lower()
    for g in ("female", "neutral", "male"):  # "female" contains "male": test it first
        if g in low:
            return g
    short = {"basicmodel_f_": "female", "basicmodel_m_": "male"}
    return next((g for prefix, g in short.items() if low.startswith(prefix)), None)


def _build_layer(path: Path, body_type: str, arrays: dict[str, np.ndarray], gender: str, num_betas: int):
    """Construct the smplx layer from arrays already read; smplx never unpickles the user's file."""
    arrays = dict(arrays)
    if body_type != "smpl":
        for side in ("l", "r"):  # PCA hand tables: required by smplx, unused (use_pca=False)
            arrays.setdefault(f"hands_components{side}", np.eye(45))
            arrays.setdefault(f"hands_mean{side}", np.zeros(45))
    if body_type == "smplx":
        arrays.setdefault("lmk_faces_idx", np.zeros(0, dtype=np.int64))
        arrays.setdefault("lmk_bary_coords", np.zeros((0, 3)))
    kwargs = {"gender": gender, "num_betas": num_betas}
    try:
        # smplx prints a warning about short shape spaces: keep it out of stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            if body_type == "smplx":
                # SMPLX has no data_struct argument: hand it a temporary .npz of plain arrays we
                # wrote ourselves (nothing pickled in it).
                with tempfile.TemporaryDirectory() as tmp:
                    npz = Path(tmp) / "model.npz"
                    np.savez(
                        npz,
                        **{k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()},
                    )
                    return smplx.SMPLXLayer(
                        model_path=str(npz), ext="npz", use_pca=False, flat_hand_mean=True,
                        num_expression_coeffs=10, **kwargs,
                    )  # fmt: skip
            # Let the shape space be as long as the file's (smplx caps short ones at 10 betas).
            base = smplx.SMPLLayer if body_type == "smpl" else smplx.SMPLHLayer
            cls = type(base.__name__, (base,), {"SHAPE_SPACE_DIM": int(arrays["shapedirs"].shape[2])})
            extra = {} if body_type == "smpl" else {"use_pca": False, "flat_hand_mean": True}
            return cls(model_path=str(path), data_struct=Struct(**arrays), **extra, **kwargs)
    except (KeyError, AttributeError, ValueError, IndexError, TypeError, RuntimeError) as e:
        raise BodyModelError(
            f"{path.name}: the {body_type} model could not be built ({type(e).__name__}: {e}); the file "
            "is damaged or not an official model, download it again."
        ) from None


def vertex_regions(body: BodyModel) -> torch.Tensor:
    """Body-part region of every vertex of ``body``: [V] long (landmarks.REGION_* values).

    Derived from the dominant skinning joint; hair is the head skin above/behind the hairline
    plane of ``landmarks.regions_from_weights`` (rest pose, betas 0).
    """
    kw = {"device": body.device, "dtype": body.dtype}
    eye = torch.eye(3, **kw)
    with torch.no_grad():
        out = body(
            torch.zeros(1, body.num_betas, **kw),
            eye[None],
            eye.expand(1, body.num_body_joints, 3, 3),
            torch.zeros(1, 3, **kw),
        )
    return regions_from_weights(body.lbs_weights, out.vertices[0], out.face_landmarks[0]).to(body.device)
