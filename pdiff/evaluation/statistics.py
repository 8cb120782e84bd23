r"""Statistics over seeds: intervals, paired differences, resolution.

Every method is tuned and evaluated once per seed ``s = 1..n`` on the same
test tasks ``k = 1..K``, giving the mean test return ``r[s, k]`` of each task.
The score of a seed is its task mean ``x_s = (1/K) sum_k r[s, k]``, and seeds
are the unit of replication:

.. math::

  \bar x = \frac{1}{n}\sum_s x_s, \qquad
  s_x = \sqrt{\frac{1}{n-1}\sum_s (x_s - \bar x)^2}, \qquad
  \mathrm{SE} = \frac{s_x}{\sqrt n},

and the two-sided interval at confidence ``c`` is the Student-t interval

.. math::

  \bar x \pm t_{(1+c)/2,\; n-1}\,\mathrm{SE}

(e.g. ``t_{0.975, 4} = 2.7764451`` for ``n = 5`` seeds at 95%). With one seed
``s_x`` is undefined: the std, the standard error and the interval are
``None`` (JSON ``null``), never NaN.

All methods of a seed see the same few-shot data and the same evaluation
tasks, so a method ``m`` and the baseline ``b`` are *paired* by seed. Their
comparison uses the per-seed differences ``d_s = x^m_s - x^b_s``, with the
same mean, ``s_d``, ``SE_d = s_d / sqrt(n)`` and t-interval as above; the
difference is *significant* at confidence ``c`` when its interval excludes 0.
Pairing removes the seed-to-seed variation that both share (the draw of the
few-shot data), so ``s_d`` is usually well below ``sqrt(s_m^2 + s_b^2)``. The
same is done per task with ``d_{s,k} = r^m[s, k] - r^b[s, k]``.

The resolution of a table is summarised by one standard error of a difference
between two rows, pooled over all ``P = M (M - 1) / 2`` pairs of its ``M``
rows (each pair paired by seed, all with ``n - 1`` degrees of freedom):

.. math::

  \mathrm{SE}_\Delta = \sqrt{\frac{1}{P}\sum_{i<j} \frac{s_{d,ij}^2}{n}},
  \qquad
  \Delta_{\min} = t_{(1+c)/2,\; n-1}\,\mathrm{SE}_\Delta,

the half-width of the interval of a typical difference: with ``n`` seeds a
difference below ``Delta_min`` is not resolvable. The pooled variance is the
mean of the pairs' variances (a root mean square of their standard errors);
the pairs share rows and are not independent, so the degrees of freedom are
kept at ``n - 1`` rather than pooled.

Every function returns plain Python floats, ints, lists, ``None`` and
strings, so its output is strict JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as sp_stats

BASELINE = "prompt_dt"


def t_quantile(confidence: float, dof: int) -> float:
  """``t_{(1+c)/2, dof}``: the two-sided Student-t quantile at ``c``."""
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
  if dof < 1:
    raise ValueError(f"The t quantile needs dof >= 1, got {dof}.")
  return float(sp_stats.t.ppf(0.5 * (1.0 + confidence), dof))


def _as_returns(values, name: str) -> np.ndarray:
  """``values`` as a finite float64 ``[seeds, tasks]`` array."""
  r = np.asarray(values, np.float64)
  if r.ndim != 2 or r.size == 0:
    raise ValueError(f"{name} must be a non-empty [seeds, tasks] array, got "
                     f"shape {r.shape}.")
  if not np.all(np.isfinite(r)):
    raise ValueError(f"{name} holds non-finite returns: {r.tolist()}.")
  return r


def _interval(x: np.ndarray, confidence: float) -> dict:
  """Mean, std (ddof=1), SE and t-interval over axis 0 of ``x``.

  Scalars for a 1-D ``x``, lists for a 2-D one; all but the mean are
  ``None`` with a single row.
  """
  n = x.shape[0]
  mean = x.mean(axis=0)
  if n < 2:
    return dict(mean=mean.tolist(), std=None, sem=None, ci_low=None,
                ci_high=None)
  std = x.std(axis=0, ddof=1)
  sem = std / np.sqrt(n)
  half = t_quantile(confidence, n - 1) * sem
  return dict(mean=mean.tolist(), std=std.tolist(), sem=sem.tolist(),
              ci_low=(mean - half).tolist(), ci_high=(mean + half).tolist())


def summarize(returns_by_seed: Sequence[Sequence[float]], *,
              confidence: float = 0.95) -> dict:
  """Summary over seeds of one method's returns.

  Args:
    returns_by_seed: ``[num_seeds, num_tasks]`` mean test return ``r[s, k]``
      of each task for each seed.
    confidence: level ``c`` of the intervals.

  Returns:
    A dict of JSON types with keys

    * ``mean``: mean over seeds of the task mean ``x_s``;
    * ``std``: ``s_x`` (ddof=1); ``sem``: ``s_x / sqrt(n)``;
    * ``ci_low``, ``ci_high``: ``mean -+ t_{(1+c)/2, n-1} sem``;
    * ``confidence``: ``c``; ``num_seeds``: ``n``; ``num_tasks``: ``K``;
    * ``per_seed``: ``[x_1, ..., x_n]``;
    * ``per_task``: mean over seeds of each task;
    * ``per_task_std``: std over seeds (ddof=1) of each task.

    With one seed ``std``, ``sem``, ``ci_low``, ``ci_high`` and
    ``per_task_std`` are ``None``.
  """
  r = _as_returns(returns_by_seed, "returns_by_seed")
  per_seed = r.mean(axis=1)
  out = _interval(per_seed, confidence)
  per_task = _interval(r, confidence)
  out.update(confidence=float(confidence), num_seeds=int(r.shape[0]),
             num_tasks=int(r.shape[1]), per_seed=per_seed.tolist(),
             per_task=per_task["mean"], per_task_std=per_task["std"])
  return out


def paired_difference(method_by_seed: Sequence[Sequence[float]],
                      baseline_by_seed: Sequence[Sequence[float]], *,
                      confidence: float = 0.95) -> dict:
  """Difference ``method - baseline``, paired by seed and by task.

  Args:
    method_by_seed: ``[num_seeds, num_tasks]`` returns of the method.
    baseline_by_seed: the baseline's, same shape, same seeds and tasks in
      the same order.
    confidence: level ``c`` of the intervals.

  Returns:
    A dict of JSON types with keys

    * ``mean``, ``std`` (ddof=1), ``sem``, ``ci_low``, ``ci_high``: of the
      per-seed differences of task means ``d_s = x^m_s - x^b_s``;
    * ``significant``: whether ``[ci_low, ci_high]`` excludes 0;
    * ``confidence``, ``num_seeds``;
    * ``per_seed``: ``[d_1, ..., d_n]``;
    * ``per_task_mean``, ``per_task_std``, ``per_task_ci_low``,
      ``per_task_ci_high``: the same for each task's difference
      ``r^m[s, k] - r^b[s, k]`` over seeds.

    With one seed the std, SE and intervals are ``None``, and so is
    ``significant``.

  Raises:
    ValueError: if the two shapes differ (both are named) or are not
      ``[seeds, tasks]``.
  """
  m = _as_returns(method_by_seed, "method_by_seed")
  b = _as_returns(baseline_by_seed, "baseline_by_seed")
  if m.shape != b.shape:
    raise ValueError(f"Paired returns need the same [seeds, tasks] shape: "
                     f"method {m.shape} vs baseline {b.shape}.")
  diff = m - b
  per_seed = diff.mean(axis=1)
  out = _interval(per_seed, confidence)
  if out["ci_low"] is None:
    significant = None
  else:
    significant = bool(out["ci_low"] > 0.0 or out["ci_high"] < 0.0)
  per_task = _interval(diff, confidence)
  out.update(significant=significant, confidence=float(confidence),
             num_seeds=int(m.shape[0]), per_seed=per_seed.tolist(),
             per_task_mean=per_task["mean"], per_task_std=per_task["std"],
             per_task_ci_low=per_task["ci_low"],
             per_task_ci_high=per_task["ci_high"])
  return out


def difference_standard_error(
    per_method: Mapping[str, Sequence[Sequence[float]]], *,
    confidence: float = 0.95) -> dict:
  """Pooled standard error of a difference between two rows of a table.

  ``SE_Delta = sqrt(mean_{i<j} s_{d,ij}^2 / n)`` over all pairs of methods,
  each pair differenced by seed, and ``Delta_min = t_{(1+c)/2, n-1}
  SE_Delta`` (see the module docstring).

  Args:
    per_method: ``{label: [num_seeds, num_tasks] returns}``, all one shape.
    confidence: level ``c``.

  Returns:
    ``{"difference_se", "min_resolvable_difference", "num_pairs",
    "num_seeds", "confidence"}``; the first two are ``None`` with fewer than
    two methods or fewer than two seeds.

  Raises:
    ValueError: if the methods' shapes differ (all are named).
  """
  arrays = {k: _as_returns(v, f"returns of {k}") for k, v in per_method.items()}
  shapes = {k: a.shape for k, a in arrays.items()}
  if len(set(shapes.values())) > 1:
    raise ValueError(f"Paired returns need the same [seeds, tasks] shape for "
                     f"every method, got {shapes}.")
  labels = list(arrays)
  n = next(iter(shapes.values()))[0] if arrays else 0
  task_means = [arrays[k].mean(axis=1) for k in labels]
  variances = [np.var(task_means[i] - task_means[j], ddof=1)
               for i in range(len(labels)) for j in range(i + 1, len(labels))
               if n >= 2]
  out = dict(difference_se=None, min_resolvable_difference=None,
             num_pairs=len(labels) * (len(labels) - 1) // 2,
             num_seeds=int(n), confidence=float(confidence))
  if variances:
    se = float(np.sqrt(np.mean(variances) / n))
    out.update(difference_se=se,
               min_resolvable_difference=t_quantile(confidence, n - 1) * se)
  return out


def format_number(x: float | None, digits: int = 1, *,
                  sign: bool = False) -> str:
  """``x`` with ``digits`` decimals (``+`` for ``sign``), ``n/a`` for None.

  Rounding to zero never prints a minus sign: ``-0.04 -> "0.0"``.
  """
  if x is None:
    return "n/a"
  text = f"{float(x):{'+' if sign else ''}.{digits}f}"
  if float(text) == 0.0:
    text = f"{0.0:{'+' if sign else ''}.{digits}f}"
  return text


def format_percent(fraction: float | None, digits: int = 1) -> str:
  """A fraction in ``[0, 1]`` as a percentage with ``digits`` decimals and no
  sign (``0.25 -> "25.0"``), ``n/a`` for None."""
  return "n/a" if fraction is None else format_number(100.0 * fraction, digits)


def format_interval(low: float | None, high: float | None,
                    digits: int = 1) -> str:
  """``[low, high]`` with ``digits`` decimals, ``n/a`` when undefined."""
  if low is None or high is None:
    return "n/a"
  return f"[{format_number(low, digits)}, {format_number(high, digits)}]"


def confidence_label(confidence: float) -> str:
  """``0.95 -> "95%"``, ``0.995 -> "99.5%"``."""
  return f"{100.0 * float(confidence):.6g}%"


def _join(items: Sequence[str]) -> str:
  """``a``, ``a and b``, ``a, b and c``."""
  items = list(items)
  if len(items) <= 1:
    return "".join(items)
  return ", ".join(items[:-1]) + " and " + items[-1]


def significance_sentence(rows: Mapping[str, dict],
                          baseline: str | None = BASELINE) -> str:
  """One sentence on which methods differ from the baseline, and which not.

  Each row is a :func:`summarize` dict; a row compared with the baseline
  holds its :func:`paired_difference` as ``row["paired"]``. Differences are
  quoted as ``(+d, CI [low, high])`` with one decimal, in row order, e.g.
  ``"At 95% confidence over 5 seeds, a is above prompt_dt (+3.2, CI [1.0,
  5.4]); b (-0.5, CI [-2.1, 1.1]) does not differ from it."``
  """
  if baseline is None or baseline not in rows:
    name = f" ({baseline})" if baseline else ""
    return (f"There is no baseline{name} among the methods, so no "
            "difference is tested.")
  others = {k: r for k, r in rows.items() if k != baseline and "paired" in r}
  if not others:
    return f"{baseline} is the only method, so no difference is tested."
  first = next(iter(others.values()))["paired"]
  n, confidence = first["num_seeds"], first["confidence"]
  seeds = f"{n} seed" + ("" if n == 1 else "s")
  if any(r["paired"]["significant"] is None for r in others.values()):
    return f"With {seeds} no difference to {baseline} can be tested."
  level = confidence_label(confidence)
  quoted = {}
  for k, r in others.items():
    p = r["paired"]
    quoted[k] = (f"({format_number(p['mean'], sign=True)}, CI "
                 f"{format_interval(p['ci_low'], p['ci_high'])})")
  sig = [k for k, r in others.items() if r["paired"]["significant"]]
  non = [k for k in others if k not in sig]
  clauses = []
  if sig:
    parts = []
    for i, k in enumerate(sig):
      side = "above" if others[k]["paired"]["mean"] > 0 else "below"
      parts.append(f"{k} is {side} {baseline if i == 0 else 'it'} {quoted[k]}")
    clauses.append(_join(parts))
    if non:
      verb = "does" if len(non) == 1 else "do"
      clauses.append(_join([f"{k} {quoted[k]}" for k in non])
                     + f" {verb} not differ from it")
  else:
    noun = "interval of" if len(non) == 1 else "intervals of"
    verb = "includes" if len(non) == 1 else "include"
    clauses.append(f"no method differs from {baseline}")
    clauses.append(f"the {noun} "
                   + _join([f"{k} {quoted[k]}" for k in non]) + f" {verb} 0")
  return f"At {level} confidence over {seeds}, " + "; ".join(clauses) + "."
