"""Optax transformations for training with a guidance loss."""

from pdiff.optim.projection import ProjectConflictingState, project_conflicting

__all__ = ["ProjectConflictingState", "project_conflicting"]
