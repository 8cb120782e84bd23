"""pdiff: Prompt Diffuser in JAX/Flax."""

__version__ = "0.1.0"
