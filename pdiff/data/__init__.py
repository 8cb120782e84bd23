"""pdiff.data."""
