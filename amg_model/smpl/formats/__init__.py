"""Motion files: read every supported format as a Motion, save the project's own format."""

from amg_model.smpl.formats.detect import load_motion, save_motion

__all__ = ["load_motion", "save_motion"]
