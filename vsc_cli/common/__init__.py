"""Leaves: errors, safe file writing, progress bars and the run's settings (no torch model)."""
