"""The whole-pipeline config, checked in full before any stage runs.

:func:`validate_config` raises :class:`ConfigError` naming the field, its
value and what was expected, so that nothing is written and nothing is
trained when a value is bad. The checks cover types and ranges, unknown
fields, and the compatibility of the family, its datasets and the shipped
PLM (what can be known before any data is loaded).
"""

from __future__ import annotations

import numbers
import os

from pdiff import envs
from pdiff.data.collect import QUALITIES as DATA_QUALITIES
from pdiff.training.pretrain import STATE_STATISTICS
from pdiff.tuning import registry

PRETRAINED_ASSETS = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "assets", "pretrained")
QUALITIES = tuple(DATA_QUALITIES)
# Where each test task's few-shot trajectories are drawn from
# (config.few_shot_source): its own dataset (the default, the few-shot
# setting), or the pooled datasets of the training tasks (the zero-shot
# setting: no data of the test task).
FEW_SHOT_SOURCES = ("test_task", "training_tasks")

# Top-level fields of experiments/configs/run.py's config.
RUN_FIELDS = frozenset({
    "family", "backend", "seed", "seeds", "methods", "num_shots",
    "few_shot_quality", "few_shot_source", "eval_episodes", "pretrained",
    "collect", "pretrain", "tuning"})
COLLECT_FIELDS = frozenset({
    "family", "backend", "qualities", "num_trajectories", "expert_noise",
    "medium_noise", "seed", "tasks_per_chunk", "policy_dir"})
PRETRAIN_FIELDS = frozenset({
    "family", "backend", "quality", "context_len", "prompt_len",
    "prompt_episodes", "batch_per_task", "num_steps", "log_every",
    "ckpt_every", "train", "eval_episodes", "weight_by_length",
    "state_statistics"})


class ConfigError(ValueError):
  """A config value is missing, unknown, of the wrong type or out of range."""


def make_family(config):
  """The task family of a config's ``family`` and ``backend`` fields.

  Raises:
    ConfigError: an unknown family or backend, naming both fields.
  """
  try:
    return envs.make(config.family, backend=config.backend)
  except ValueError as e:
    raise ConfigError(f"config.family / config.backend: {e}") from e


def _p(path: str, field: str) -> str:
  return f"{path}.{field}" if path else field


def _fail(field: str, value, expected: str):
  raise ConfigError(f"config.{field} = {value!r}: expected {expected}.")


def _fields(config, expected: frozenset, where: str) -> None:
  keys = set(config.keys())
  unknown = sorted(keys - expected)
  missing = sorted(expected - keys)
  if unknown:
    raise ConfigError(f"config{where}: unknown field(s) {unknown}; known "
                      f"fields are {sorted(expected)}.")
  if missing:
    raise ConfigError(f"config{where}: missing field(s) {missing}.")


def _int(config, field: str, path: str, *, low: int = 0) -> int:
  value = config[field]
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    _fail(path, value, f"an integer >= {low}")
  if value < low:
    _fail(path, value, f"an integer >= {low}")
  return int(value)


def _float(config, field: str, path: str, *, low: float = 0.0,
           strict: bool = False) -> float:
  value = config[field]
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    _fail(path, value, "a number")
  if value < low or (strict and value == low):
    _fail(path, value, f"a number {'>' if strict else '>='} {low}")
  return float(value)


def _choice(config, field: str, path: str, allowed) -> None:
  if config[field] not in allowed:
    _fail(path, config[field], f"one of {tuple(allowed)}")


def check_collect_config(c, family: str, path: str = "collect") -> None:
  """Checks ``experiments/configs/collect.py``'s config."""
  _fields(c, COLLECT_FIELDS, f".{path}" if path else "")
  if envs.canonical_name(c.family) != family:
    _fail(_p(path, "family"), c.family, f"the run's family {family!r}")
  qualities = tuple(c.qualities)
  if not qualities or any(q not in QUALITIES for q in qualities):
    _fail(_p(path, "qualities"), qualities, f"a non-empty subset of {QUALITIES}")
  _int(c, "num_trajectories", _p(path, "num_trajectories"), low=1)
  _float(c, "expert_noise", _p(path, "expert_noise"))
  _float(c, "medium_noise", _p(path, "medium_noise"))
  _int(c, "seed", _p(path, "seed"))
  _int(c, "tasks_per_chunk", _p(path, "tasks_per_chunk"), low=1)
  if c.policy_dir:
    for quality in qualities:
      if quality == "random":
        continue
      directory = os.path.join(c.policy_dir, quality)
      for name in ("policy.json", "params.msgpack"):
        if not os.path.exists(os.path.join(directory, name)):
          _fail(_p(path, "policy_dir"), c.policy_dir,
                f"a directory with {quality}/{name} (behaviour-policy "
                "checkpoints written by experiments/train_behavior.py)")


def check_pretrain_config(c, family_name: str, path: str = "pretrain") -> None:
  """Checks ``experiments/configs/pretrain.py``'s config."""
  _fields(c, PRETRAIN_FIELDS, f".{path}" if path else "")
  if envs.canonical_name(c.family) != family_name:
    _fail(_p(path, "family"), c.family, f"the run's family {family_name!r}")
  _choice(c, "quality", _p(path, "quality"), QUALITIES)
  _choice(c, "state_statistics", _p(path, "state_statistics"),
          STATE_STATISTICS)
  if not isinstance(c.weight_by_length, bool):
    _fail(_p(path, "weight_by_length"), c.weight_by_length, "True or False")
  for field in ("context_len", "prompt_len", "prompt_episodes",
                "batch_per_task", "num_steps", "log_every", "ckpt_every"):
    _int(c, field, _p(path, field), low=1)
  _int(c, "eval_episodes", _p(path, "eval_episodes"))
  train = c.train
  _float(train, "learning_rate", _p(path, "train.learning_rate"), strict=True)
  _float(train, "weight_decay", _p(path, "train.weight_decay"))
  _int(train, "warmup_steps", _p(path, "train.warmup_steps"))
  _float(train, "grad_clip_norm", _p(path, "train.grad_clip_norm"), strict=True)
  _int(train, "seed", _p(path, "train.seed"))
  model = train.model
  for field in ("hidden_dim", "num_layers", "num_heads", "mlp_dim",
                "max_ep_len"):
    _int(model, field, _p(path, f"train.model.{field}"), low=1)
  for field in ("state_dim", "act_dim"):
    _int(model, field, _p(path, f"train.model.{field}"))
  if model.hidden_dim % model.num_heads:
    _fail(_p(path, "train.model.hidden_dim"), model.hidden_dim,
          f"a multiple of num_heads ({model.num_heads})")
  _float(model, "dropout_rate", _p(path, "train.model.dropout_rate"))
  if model.dropout_rate >= 1:
    _fail(_p(path, "train.model.dropout_rate"), model.dropout_rate, "< 1")
  family = envs.make(family_name, backend=c.backend)
  if model.max_ep_len < family.episode_length:
    _fail(_p(path, "train.model.max_ep_len"), model.max_ep_len,
          f">= the family's episode length {family.episode_length}")
  for field, size in (("state_dim", family.observation_size),
                      ("act_dim", family.action_size)):
    if model[field] not in (0, size):
      _fail(_p(path, f"train.model.{field}"), model[field],
            f"0 (from the data) or {family_name}'s {size}")


def _check_prompt_diffuser(config) -> None:
  """Prompt positions against the PLM's, and the few-shot split, before
  anything is trained."""
  from pdiff.training import pretrain
  from pdiff.tuning import prompt_diffuser as pd

  c = config.tuning.prompt_diffuser
  try:
    if config.pretrained:
      info = pretrain.read_policy_info(
          os.path.join(PRETRAINED_ASSETS, config.pretrained))
      position = info["prompt_position"]
    else:
      position = pretrain.PROMPT_POSITION
    pd.check_positions(c, position)
    pd.check_num_shots(c, config.num_shots)
  except (ValueError, KeyError, FileNotFoundError) as e:
    raise ConfigError(f"config.tuning.prompt_diffuser: {e}") from e


def check_methods(config) -> None:
  """``config.methods`` names registered methods, each with a valid config
  under ``config.tuning``."""
  known = registry.registered()
  methods = tuple(config.methods)
  if (not methods or len(set(methods)) != len(methods)
      or any(m not in known for m in methods)):
    _fail("methods", methods, f"a non-empty subset of the registered methods "
          f"{known}")
  unknown = sorted(set(config.tuning.keys()) - set(known))
  if unknown:
    raise ConfigError(f"config.tuning: unknown method(s) {unknown}; "
                      f"registered methods are {known}.")
  if "prompt_diffuser" in methods and "prompt_diffuser" in config.tuning:
    _check_prompt_diffuser(config)
  for name in methods:
    if name not in config.tuning:
      raise ConfigError(f"config.tuning.{name} is missing: the config of "
                        f"method {name!r} (experiments/configs/tuning.py).")
    try:
      registry.get(name).check_config(config.tuning[name])
    except (ValueError, KeyError, AttributeError) as e:
      raise ConfigError(f"config.tuning.{name}: {e}") from e


def check_few_shot_source(config, family) -> None:
  """``config.few_shot_source`` is known and, for ``"training_tasks"``, every
  method keeps to the few-shot trajectories it is given: a method reading a
  test task's full dataset or playing online episodes on it would see the
  data the zero-shot setting withholds."""
  _choice(config, "few_shot_source", "few_shot_source", FEW_SHOT_SOURCES)
  source = config.few_shot_source
  if source == FEW_SHOT_SOURCES[0]:
    return
  shared = sorted(set(family.train_tasks) & set(family.test_tasks))
  if shared:
    _fail("few_shot_source", source,
          f"{FEW_SHOT_SOURCES[0]!r} for {family.name}, whose training tasks "
          f"include its test tasks {shared}")
  for name in config.methods:
    method = registry.get(name)
    episodes = int(method.online_episodes(config.tuning[name]))
    if method.data != "few_shot":
      uses = "reads each test task's full dataset"
    elif episodes:
      uses = f"plays {episodes} online episodes per test task"
    else:
      continue
    raise ConfigError(
        f"config.methods: {name!r} {uses}, which config.few_shot_source = "
        f"{source!r} does not allow (no data of the test tasks: every "
        "method gets the same few-shot trajectories of the training "
        f"tasks); leave {name!r} out or use {FEW_SHOT_SOURCES[0]!r}.")


def check_run_config(config) -> None:
  """Checks the whole-pipeline config (``experiments/configs/run.py``).

  Raises:
    ConfigError: naming the first bad field, its value and what was expected.
  """
  _fields(config, RUN_FIELDS, "")
  family = make_family(config)
  _int(config, "seed", "seed")
  seeds = tuple(config.seeds)
  if (not seeds or len(set(seeds)) != len(seeds)
      or any(isinstance(s, bool) or not isinstance(s, numbers.Integral)
             or s < 0 for s in seeds)):
    _fail("seeds", seeds, "a non-empty tuple of distinct integers >= 0")
  check_methods(config)
  _choice(config, "few_shot_quality", "few_shot_quality", QUALITIES)
  check_few_shot_source(config, family)
  _int(config, "num_shots", "num_shots", low=1)
  _int(config, "eval_episodes", "eval_episodes", low=1)
  check_collect_config(config.collect, family.name)
  check_pretrain_config(config.pretrain, family.name)
  if config.num_shots > config.collect.num_trajectories:
    _fail("num_shots", config.num_shots,
          f"<= collect.num_trajectories ({config.collect.num_trajectories}), "
          "the trajectories each task's dataset holds")
  for field, quality in (("few_shot_quality", config.few_shot_quality),
                         ("pretrain.quality", config.pretrain.quality)):
    if quality not in tuple(config.collect.qualities):
      _fail(field, quality,
            f"one of collect.qualities {tuple(config.collect.qualities)}")
  if config.pretrained:
    src = os.path.join(PRETRAINED_ASSETS, config.pretrained)
    if not os.path.isdir(src):
      shipped = sorted(os.listdir(PRETRAINED_ASSETS))
      _fail("pretrained", config.pretrained,
            f"'' (pre-train) or a shipped checkpoint, one of {shipped}")
