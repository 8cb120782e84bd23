"""Evaluation: prompted rollouts vectorised over tasks x episodes (x seeds)."""

from pdiff.evaluation.report import (
    markdown_table,
    save_bar_chart,
    summarize,
    write_json_atomic,
)
from pdiff.evaluation.rollout import (
    RolloutResult,
    evaluate_tuned,
    has_success_metric,
    make_prompted_rollout,
    over_seeds,
)

__all__ = [
    "RolloutResult",
    "evaluate_tuned",
    "has_success_metric",
    "make_prompted_rollout",
    "markdown_table",
    "over_seeds",
    "save_bar_chart",
    "summarize",
    "write_json_atomic",
]
