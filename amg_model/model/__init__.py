"""model part of amg_model."""
