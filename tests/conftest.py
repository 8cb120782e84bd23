"""Test configuration: CPU only, eight forced host devices for sharding tests,
no persistent compilation cache unless a test asks for one (launchers run
by the tests never write to the user's cache directory), and host
environments stepped in the test's process unless a test asks for workers."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("PDIFF_COMPILATION_CACHE", "off")
os.environ.setdefault("PDIFF_HOST_WORKERS", "1")
