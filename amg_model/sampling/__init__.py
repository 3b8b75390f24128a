"""sampling part of amg_model."""
