"""The whole experiment on one task family, resumable and fingerprinted.

``run(config, workdir)`` is the README's main job (``experiments/run.py``);
the stages are importable for launchers that run one of them.
"""

from pdiff.pipeline.prepare import (
    ensure_datasets,
    ensure_pretrained,
    shipped_checkpoint_fits,
)
from pdiff.pipeline.run import method_rows, run, write_results
from pdiff.pipeline.tuning_runs import (
    draw_few_shot,
    ensure_prepared,
    load_split,
    make_context,
    run_keys,
    seed_key,
    stacked,
)
from pdiff.pipeline.validate import (
    PRETRAINED_ASSETS,
    ConfigError,
    check_run_config,
)

__all__ = [
    "PRETRAINED_ASSETS", "ConfigError", "check_run_config", "draw_few_shot",
    "ensure_datasets", "ensure_prepared", "ensure_pretrained", "load_split",
    "make_context", "method_rows", "run", "run_keys", "seed_key",
    "shipped_checkpoint_fits", "stacked", "write_results",
]
