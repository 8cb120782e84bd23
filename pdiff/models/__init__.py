"""pdiff.models."""
