"""AMG (Avatar Motion Guided video generation) for ComfyUI.

ComfyUI imports this package and calls ``comfy_entrypoint``. The library ``amg_model`` lives next to
this file and never imports ComfyUI; the ComfyUI glue lives in ``nodes/``.
"""

import os
import sys

_ROOT = os.path.dirname(os.path.abspath(__file__))
# The library imports itself as ``amg_model``; appended (not prepended) so that no module of this
# folder can shadow one of ComfyUI's (ComfyUI has a top-level ``nodes`` module).
if _ROOT not in sys.path:
    sys.path.append(_ROOT)


# Upload buttons for the motion, keypoint and camera file loaders (web/amg_upload.js).
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """The ComfyExtension that registers the AMG nodes and model folders."""
    from .nodes import AMGExtension

    return AMGExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
