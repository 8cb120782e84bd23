"""pdiff.evaluation."""
