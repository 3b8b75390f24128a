"""formats part of amg_model."""
