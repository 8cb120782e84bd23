r"""A family's return conditioning (target and scale), by a rule on its data.

A Decision Transformer is evaluated by asking for a return-to-go (the
family's ``return_target``) and reads every return-to-go divided by the
family's ``return_scale``. Both depend on what the offline data
demonstrates, and neither may be chosen by looking at test-task results, so
pdiff derives them from the mean expert-dataset return :math:`R_m` of each
training task :math:`m \in \mathcal{M}_{\text{train}}` by one rule:

.. math::

   s = \min\{\, v \in \{1, 2, 5\} \times 10^{\mathbb{Z}} :
       v \ge \max_m |R_m| \,\}, \qquad
   g = \min\big(\lceil (\max_m R_m + \mu s) / 10 \rceil \cdot 10,\;
       \bar R\big),

with margin :math:`\mu = 0.1` and :math:`\bar R` the largest episode return
the reward allows (0 for cheetah-vel, whose reward is never positive;
unbounded otherwise). The scale keeps normalised returns-to-go within
:math:`[-1, 1]` on the training data (Prompt-DT's scales follow the same
order of magnitude: 500 for cheetah-vel and ant-dir, 1000 for cheetah-dir);
the target asks for a little more than the best demonstrated training task,
as Decision Transformers are usually prompted.

>>> return_conditioning({0: -30.1, 1: -239.1}, (0, 1), return_supremum=0.0)
(0.0, 500.0)
>>> return_conditioning({0: 412.0, 1: 246.2}, (0, 1))
(470.0, 500.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# mu: the target exceeds the best training task's mean return by mu * scale.
TARGET_MARGIN = 0.1
# Targets are rounded up to a multiple of this.
TARGET_ROUNDING = 10.0


def scale_for(magnitude: float) -> float:
  """The smallest value of the 1-2-5 series (..., 100, 200, 500, 1000, ...)
  at least ``magnitude`` (> 0)."""
  if not magnitude > 0 or not math.isfinite(magnitude):
    raise ValueError(f"scale_for: magnitude must be a positive finite "
                     f"number, got {magnitude!r}.")
  exponent = math.floor(math.log10(magnitude))
  for e in (exponent, exponent + 1):
    for mantissa in (1, 2, 5):
      value = mantissa * 10.0 ** e
      if value >= magnitude * (1 - 1e-12):
        return float(round(value, 12))
  raise AssertionError("unreachable")  # 10 ** (exponent + 1) >= magnitude


def return_conditioning(expert_means: Mapping[int, float],
                        train_tasks: Sequence[int], *,
                        return_supremum: float | None = None,
                        margin: float = TARGET_MARGIN
                        ) -> tuple[float, float]:
  """``(return_target, return_scale)`` of a family by the module's rule.

  Args:
    expert_means: mean return of each task's expert dataset, by task index
      (``pdiff/assets/behavior/{family}/dataset_returns.json``'s
      ``"expert"``, whose keys may be strings).
    train_tasks: the training tasks; only their returns are read.
    return_supremum: the largest episode return the reward allows, or None.
    margin: mu, the target's margin as a fraction of the scale.

  Returns:
    (target, scale) as floats.

  Raises:
    ValueError: if a training task has no expert return, or ``margin < 0``.
  """
  if margin < 0:
    raise ValueError(f"return_conditioning: margin must be >= 0, got "
                     f"{margin!r}.")
  means = {int(k): float(v) for k, v in expert_means.items()}
  missing = [t for t in train_tasks if int(t) not in means]
  if not train_tasks or missing:
    raise ValueError(f"return_conditioning: no expert return for training "
                     f"task(s) {missing or list(train_tasks)}; expected one "
                     "per training task.")
  values = [means[int(t)] for t in train_tasks]
  scale = scale_for(max(abs(v) for v in values))
  target = math.ceil((max(values) + margin * scale) / TARGET_ROUNDING)
  target = float(target * TARGET_ROUNDING)
  if return_supremum is not None:
    target = min(target, float(return_supremum))
  return target, scale
