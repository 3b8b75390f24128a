"""Read any supported motion file (format detected from its suffix and contents) and save ours.

Files are read safely: ``.npz``/``.npy`` without pickles, ``.pt``/``.pth`` with
``torch.load(weights_only=True)``, ``.pkl`` through the restricted unpickler
(amg_model.smpl.unpickle), ``.json`` as JSON. Only then is the content inspected to pick a reader.
"""

from __future__ import annotations

import inspect
import json
import logging
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from amg_model.errors import MotionError
from amg_model.smpl.formats.amass import is_amass, motion_from_amass
from amg_model.smpl.formats.gvhmr import is_gvhmr, motion_from_gvhmr
from amg_model.smpl.formats.motiondiff import is_motiondiff, motion_from_motiondiff
from amg_model.smpl.formats.npz import is_project_npz, motion_from_project_npz, save_project_npz
from amg_model.smpl.formats.phalp import is_phalp, motion_from_phalp
from amg_model.smpl.formats.smpl_params import looks_like_smpl_params, motion_from_smpl_params
from amg_model.smpl.motion import Motion
from amg_model.smpl.unpickle import load_pickle

logger = logging.getLogger(__name__)

READERS: dict[str, Callable[..., Motion]] = {
    "amg": motion_from_project_npz,
    "amass": motion_from_amass,
    "gvhmr": motion_from_gvhmr,
    "motiondiff": motion_from_motiondiff,
    "phalp": motion_from_phalp,
    "smpl_params": motion_from_smpl_params,
}
SUFFIXES = (".npz", ".pt", ".pth", ".pkl", ".pickle", ".json")
_JOBLIB_HINT = (
    "convert it once to a plain pickle (pickle.dump(joblib.load(path), file)) in the tracker's "
    "environment, then load the new .pkl."
)


def read_file(path: Path):
    """The raw content of a motion file (dict / list of arrays), read without running code."""
    source = path.name
    if not path.is_file():
        raise MotionError(f"{path}: motion file not found; check the path.")
    if path.stat().st_size == 0:
        raise MotionError(f"{source}: the file is empty; export the motion again.")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = {}
                for key in npz.files:
                    try:
                        data[key] = npz[key]
                    except ValueError:  # object arrays need pickle: skip them, never unpickle
                        logger.info("%s: entry %r holds Python objects; ignored", source, key)
            return data
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise MotionError(
                f"{source}: is truncated or not a valid .npz archive ({err}); export it again."
            ) from None
    if suffix in (".pt", ".pth"):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as err:
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise MotionError(
                f"{source}: cannot be read as a tensor file without running code ({reason}); "
                "re-save it with plain tensors."
            ) from None
    if suffix in (".pkl", ".pickle"):
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x78" and head[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
            raise MotionError(
                f"{source}: is a compressed joblib file (as PHALP / 4D-Humans write); {_JOBLIB_HINT}"
            )
        try:
            return load_pickle(path, error=MotionError)
        except MotionError as err:
            if "joblib" in str(err):  # joblib stores numpy arrays outside the pickle stream
                raise MotionError(
                    f"{source}: is a joblib file (as PHALP / 4D-Humans write); {_JOBLIB_HINT}"
                ) from None
            raise
    if suffix == ".json":
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise MotionError(f"{source}: is not valid JSON ({err}); fix or export the file again.") from None
    raise MotionError(f"{source}: unsupported motion file type {suffix!r}; use one of {', '.join(SUFFIXES)}.")


def detect_format(data, source: str) -> str:
    """The reader name for loaded content (a key of READERS)."""
    if isinstance(data, dict):
        if is_project_npz(data):
            return "amg"
        if is_amass(data):
            return "amass"
        if is_gvhmr(data):
            return "gvhmr"
        if is_motiondiff(data):
            return "motiondiff"
        if is_phalp(data):
            return "phalp"
    if looks_like_smpl_params(data):
        return "smpl_params"
    keys = sorted(map(str, data))[:12] if isinstance(data, dict) else type(data).__name__
    raise MotionError(
        f"{source}: no known motion layout (found {keys}); supported: AMASS, SMPL parameters "
        "(global_orient/body_pose/transl or poses), PHALP/4D-Humans, GVHMR, ComfyUI-MotionDiff."
    )


def load_motion(path: str | Path, format: str = "auto", **options) -> Motion:  # noqa: A002
    """Load a motion file of any supported format as a validated, y-up Motion.

    Args:
        path: the file (.npz, .pt/.pth, .pkl, .json).
        format: "auto" (detect from the content) or one of READERS' names.
        **options: reader options, used where they apply and otherwise ignored (logged):
            fps (for files that store none), body_type, up_axis ("y"/"z", plain parameter files),
            gaps / min_frames / tracks (PHALP), frame ("world"/"camera", GVHMR), pelvis_rest
            (rest pelvis J0 [3] of the body model, for exact re-orientation).
    """
    path = Path(path)
    data = read_file(path)
    name = detect_format(data, path.name) if format == "auto" else format
    if name not in READERS:
        raise MotionError(f"{path.name}: unknown format {format!r}; use 'auto' or one of {sorted(READERS)}.")
    reader = READERS[name]
    accepted = set(inspect.signature(reader).parameters) - {"data", "source"}
    used = {k: v for k, v in options.items() if k in accepted and v is not None}
    ignored = sorted(set(options) - accepted)
    if ignored:
        logger.info("%s: options %s do not apply to %s files; ignored", path.name, ignored, name)
    logger.debug("%s: reading as %s", path.name, name)
    return reader(data, path.name, **used)


def save_motion(motion: Motion, path: str | Path) -> Path:
    """Save ``motion`` in the project's ``.npz`` format (see formats.npz); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise MotionError(f"{path.name}: motions are saved as .npz; change the file name's suffix.")
    save_project_npz(motion, path)
    return path
