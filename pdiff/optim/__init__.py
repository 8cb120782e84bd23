"""pdiff.optim."""
