"""pdiff.envs."""
