"""pdiff.tuning."""
