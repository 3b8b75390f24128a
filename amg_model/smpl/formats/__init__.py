"""Motion files: read every supported format as a Motion, save the project's own format.

``load_motion`` and ``save_motion`` are imported lazily, so that importing a helper module of this
package (e.g. ``formats.convert`` from ``smpl.edit``) does not import every reader.
"""

import importlib

__all__ = ["load_motion", "save_motion"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("amg_model.smpl.formats.detect"), name)
    raise AttributeError(f"module 'amg_model.smpl.formats' has no attribute {name!r}")
