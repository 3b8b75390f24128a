"""camera part of amg_model."""
