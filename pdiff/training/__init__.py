"""pdiff.training."""
