"""pdiff.diffusion."""
