"""smpl part of amg_model."""
