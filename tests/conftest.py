"""Test configuration: CPU only, eight forced host devices for sharding tests,
and no persistent compilation cache unless a test asks for one (launchers run
by the tests never write to the user's cache directory)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("PDIFF_COMPILATION_CACHE", "off")
