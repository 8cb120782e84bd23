"""Renderers of the generated blocks of README.md and docs/*.md."""
