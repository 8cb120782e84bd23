"""What every launcher shares: config flags with clear errors, and user
errors reported as one line instead of a traceback.

  _CONFIG = launch.define_config("experiments/configs/run.py", "...")
  ...
  if __name__ == "__main__":
    launch.run(main)
"""

from __future__ import annotations

import importlib.util
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from pdiff import compilation_cache, parallel, stages
from pdiff.data.storage import DatasetError
from pdiff.pipeline.validate import ConfigError, check_run_config
from pdiff.serialization import ParamsFileError

# Errors caused by the user's input (a value, a file, a work directory),
# reported without a traceback.
USER_ERRORS = (ConfigError, stages.StaleStageError, DatasetError,
               ParamsFileError)


def _flag_value(argv, name: str) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def load_config(spec: str):
  """The config of ``FILE[:ARG]``, as ``--config`` takes it: ``FILE``'s
  ``get_config(ARG)`` (or ``get_config()`` without ``ARG``)."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_launch_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def unknown_override(argv, name: str, default: str) -> str | None:
  """A message for the first ``--{name}.FIELD=...`` whose field does not
  exist in the config, naming it and the fields known at that level."""
  spec = _flag_value(argv, name) or default
  try:
    config = load_config(spec)
  except Exception as e:  # noqa: BLE001  (the config file itself failed)
    return f"cannot load the config {spec!r}: {type(e).__name__}: {e}"
  for arg in argv:
    if not arg.startswith(f"--{name}."):
      continue
    path = arg[len(name) + 3:].split("=", 1)[0]
    node, walked = config, []
    for part in path.split("."):
      keys = list(node.keys()) if hasattr(node, "keys") else []
      if part not in keys:
        where = ".".join([name] + walked)
        return (f"unknown config field {'.'.join([name] + walked + [part])!r} "
                f"in {arg!r} (config {spec}); the fields of {where} are "
                f"{sorted(keys)}.")
      node, walked = node[part], walked + [part]
  return None


# Config flags of this program: name -> default config file.
_CONFIG_FLAGS: dict[str, str] = {}


def _exit_unknown_override(argv, error) -> None:
  message = None
  for name, default in _CONFIG_FLAGS.items():
    message = message or unknown_override(argv, name, default)
  print(f"FATAL Flags parsing error: {message or error}", file=sys.stderr)
  sys.exit(1)


def define_config(default: str, help_text: str, name: str = "config"):
  """``config_flags.DEFINE_config_file`` that exits with one clear line when
  an override names a field the config does not have (checked here for the
  default config file, and by :func:`run` when ``--config`` names another)."""
  _CONFIG_FLAGS[name] = default
  try:
    return config_flags.DEFINE_config_file(name, default, help_text)
  except (AttributeError, KeyError) as e:
    _exit_unknown_override(sys.argv, e)


def _start_distributed_if_asked(argv, flag_values=None) -> None:
  """Starts ``jax.distributed`` when the program has a ``--distributed`` flag
  (in ``flag_values``, absl's ``FLAGS`` by default) and ``argv`` turns it on,
  before the flags are parsed.

  Parsing the config flags runs the config files, which may already use JAX
  (looking up a task family does), and ``jax.distributed.initialize()`` must
  come before any JAX computation. The program's own call to
  :func:`pdiff.parallel.maybe_initialize_distributed` then does nothing.
  """
  flag_values = flags.FLAGS if flag_values is None else flag_values
  if "distributed" not in flag_values:
    return
  scan = flags.FlagValues()
  flags.DEFINE_bool("distributed", False, "", flag_values=scan)
  try:
    scan(list(argv), known_only=True)
  except flags.Error:
    return  # a malformed value: the full parse below reports it
  if scan.distributed:
    parallel.maybe_initialize_distributed(True)


def _parse_flags(argv):
  _start_distributed_if_asked(argv)
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:
    _exit_unknown_override(argv, e)


def define_workdir():
  """The required ``--workdir`` flag of a launcher that resumes its work."""
  return flags.DEFINE_string("workdir", None, "Work directory (resumed when "
                             "it exists).", required=True)


def report_main(config_flag, workdir_flag, compute, markdown, out: str):
  """``main(argv)`` of a launcher whose config holds a pipeline config
  ``run`` and fields of its own: checks ``run``, computes the report with
  ``compute(config, workdir)`` and logs its ``markdown`` and where ``out``
  (relative to the work directory) was written."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments {argv[1:]}")
    config, workdir = config_flag.value, workdir_flag.value
    check_run_config(config.run)
    report = compute(config, workdir)
    logging.info("\n%s", markdown(report))
    logging.info("report: %s/%s", workdir, out)

  return main


def run(main) -> None:
  """``app.run(main)``, with user errors printed as one line (exit code 2)
  and JAX's persistent compilation cache on (:mod:`pdiff.compilation_cache`).
  """
  def guarded(argv):
    try:
      return main(argv)
    except USER_ERRORS as e:
      logging.error("%s", e)
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # Before the flags are parsed: the config files may already compile.
  try:
    cache = compilation_cache.enable()
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)

  def guarded_with_cache(argv):
    logging.info("compilation cache: %s", cache or
                 f"off ({compilation_cache.ENV})")
    return guarded(argv)

  app.run(guarded_with_cache, flags_parser=_parse_flags)
