"""render part of amg_model."""
