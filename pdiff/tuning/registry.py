"""Prompt-tuning methods by name: one module per method registers itself.

A method is a :class:`Method`: what it needs (``information``), a one-off
``prepare`` per seed (work shared by all test tasks, e.g. Prompt Diffuser's
stage-1 diffusion model; cached by the pipeline under its fingerprint), and a
``make_tune`` that builds, once per config, the function tuning all test
tasks of a seed at once::

  tune(prepared, data [M, N, T, ...], keys [M])
      -> (TunedPolicy stacked over the M tasks, {metric: [M, steps]})

``data`` is the test tasks' few-shot trajectories (or, for methods whose
``data`` is ``"full_dataset"``, every trajectory of each test task's
dataset). A tuned policy's ``params`` are the PLM's own for prompt methods
(``params_per_task=False``) or stacked per task (fine-tuning methods).

The pipeline, ``experiments/tune.py`` and the tables iterate
:func:`registered`; adding a method is one module calling :func:`register`
and one config in ``experiments/configs/tuning.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from pdiff.models.policy import PretrainedPolicy, TunedPolicy
from pdiff.types import Trajectories

# Which test-task data ``tune`` receives.
DATA = ("few_shot", "full_dataset")

TuneFn = Callable[[Any, Trajectories, jax.Array],
                  tuple[TunedPolicy, dict[str, jax.Array]]]
# rollout(params, prompts [M, Kp, ...], key, num_episodes, params_per_task)
#   -> returns [M, num_episodes]: the test tasks' episodes, one jit.
RolloutFn = Callable[[Any, Any, jax.Array, int, bool], jax.Array]


@dataclasses.dataclass(frozen=True)
class TuningContext:
  """What ``prepare`` and ``make_tune`` may read.

  Attributes:
    plm: the frozen pre-trained policy.
    family: the task family.
    train_trajs: every training task's trajectories of the PLM's dataset
      quality, pooled ``[N, T, ...]`` (e.g. for stage-1 pre-training).
    test_tasks: indices of the test tasks, in the order of ``data``.
    rollout: rolls prompted episodes out on the test tasks (for methods
      with ``online_episodes``; every episode counts against their budget).
  """

  plm: PretrainedPolicy
  family: Any
  train_trajs: Trajectories | None
  test_tasks: tuple[int, ...]
  rollout: RolloutFn | None = None


@dataclasses.dataclass(frozen=True)
class Method:
  """A registered prompt-tuning method.

  Attributes:
    name: the registry key and the table's label (variants add ``[...]``).
    check_config: raises ``ValueError`` naming a bad field of its config.
    make_tune: ``(context, config) -> tune`` (see the module docstring);
      called once per row and reused over seeds.
    trainable_parameters: ``(context, config) -> int``, parameters the
      method trains per task (0 for none).
    data: which test-task data ``tune`` gets, one of :data:`DATA`.
    online_episodes: ``config -> int``: episodes per test task the method
      rolls out while tuning (0: offline).
    prepare: ``(context, config) -> prepare``, where ``prepare(key)`` does
      the one-off work of a seed and returns a pytree of arrays; None for
      methods without. ``prepare_template(context, config)`` gives its
      structure, shapes and dtypes (for checked loading of the cached
      result), and ``prepare_config(config)`` the part of the config it
      reads (its fingerprint; the whole config by default).
    params_per_task: whether tuned policies carry per-task parameters.
    variants: ``config -> [(label suffix, config)]``: rows of the table
      (e.g. Prompt Diffuser's gradient combinations); default one row.
    diagnostic: not a prompt-tuning method but a measurement (e.g. the
      oracle prompt); tables mark it.
  """

  name: str
  check_config: Callable[[ml_collections.ConfigDict], None]
  make_tune: Callable[[TuningContext, ml_collections.ConfigDict], TuneFn]
  trainable_parameters: Callable[[TuningContext, ml_collections.ConfigDict],
                                 int]
  data: str = "few_shot"
  online_episodes: Callable[[ml_collections.ConfigDict], int] = (
      lambda config: 0)
  prepare: Callable[..., Any] | None = None
  prepare_template: Callable[..., Any] | None = None
  prepare_config: Callable[[ml_collections.ConfigDict], dict] = (
      lambda config: config.to_dict())
  params_per_task: bool = False
  variants: Callable[[ml_collections.ConfigDict],
                     list[tuple[str, ml_collections.ConfigDict]]] | None = None
  diagnostic: bool = False

  def __post_init__(self):
    if self.data not in DATA:
      raise ValueError(f"method {self.name!r}: data must be one of {DATA}, "
                       f"got {self.data!r}.")
    if (self.prepare is None) != (self.prepare_template is None):
      raise ValueError(f"method {self.name!r}: prepare and prepare_template "
                       "come together.")

  def rows(self, config) -> list[tuple[str, ml_collections.ConfigDict]]:
    """``[(label, config)]``, one per row of the table."""
    if self.variants is None:
      return [(self.name, config)]
    return [(f"{self.name}[{suffix}]", c) for suffix, c in self.variants(config)]

  def information(self, config, few_shot_source: str = "test_task") -> str:
    """What the method used, for the table: e.g. ``"few-shot + 40 online
    episodes"``; ``few_shot_source="training_tasks"`` (the zero-shot
    protocol: the few-shot trajectories come from the training tasks) gives
    ``"zero-shot (training tasks' trajectories)"``."""
    if few_shot_source not in ("test_task", "training_tasks"):
      raise ValueError(f"few_shot_source must be 'test_task' or "
                       f"'training_tasks', got {few_shot_source!r}.")
    if self.data != "few_shot":
      text = "full dataset"
    elif few_shot_source == "test_task":
      text = "few-shot"
    else:
      text = "zero-shot (training tasks' trajectories)"
    episodes = int(self.online_episodes(config))
    if episodes:
      text += f" + {episodes} online episodes"
    return text


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
  """Adds ``method`` to the registry (its name must be new)."""
  if method.name in _REGISTRY:
    raise ValueError(f"a tuning method named {method.name!r} is registered "
                     "already.")
  _REGISTRY[method.name] = method
  return method


def registered() -> tuple[str, ...]:
  """Names of the registered methods, in registration (table) order."""
  _load_builtin()
  return tuple(_REGISTRY)


def get(name: str) -> Method:
  """The method ``name``; ValueError naming the registered ones."""
  _load_builtin()
  if name not in _REGISTRY:
    raise ValueError(f"unknown tuning method {name!r}; registered methods are "
                     f"{tuple(_REGISTRY)}.")
  return _REGISTRY[name]


def _load_builtin() -> None:
  # Importing the package imports every method module, which registers it.
  import pdiff.tuning  # noqa: F401
