"""Configs of the paper's experiments (``experiments/paper.py``).

Usage: ``--config=experiments/configs/paper.py:EXPERIMENT[,PRESET]`` with
EXPERIMENT one of :data:`EXPERIMENTS` and PRESET ``cpu`` (default) or ``tiny``
(a smoke run on point_robot):

* ``table1``: every method on every family (the paper's Table 1);
* ``ablation``: Prompt Diffuser's gradient combinations (the paper's
  Figure 3);
* ``table2``: the few-shot prompt, Prompt-Tuning DT and Prompt Diffuser with
  few-shot data (and initial prompts) of each quality, on cheetah-vel (the
  paper's Table 2);
* ``table3``: the same three methods on ant-dir's out-of-distribution split
  (``ant_dir_10``), few-shot (the test tasks' data) and zero-shot (the
  training tasks' data), each setting a pipeline run of its own (the
  paper's Table 3; the tiny preset runs point_robot's own split).

Each family runs ``experiments/configs/run.py:FAMILY,PRESET`` (``runs``) with
the experiment's ``methods``, ``seeds``, ``modes`` and ``named_settings`` put
in at run time, so that overriding those fields here changes every family's
run.
"""

import ml_collections

from experiments.configs import run as run_configs
from experiments.configs import tuning

EXPERIMENTS = ("table1", "ablation", "table2", "table3")
PRESETS = ("cpu", "tiny")
# The paper's environments, in the paper's order; metaworld_reach needs the
# metaworld extra (without it, --config.families can leave it out).
PAPER_FAMILIES = ("cheetah_dir", "cheetah_vel", "ant_dir", "metaworld_reach")
# Table 2's methods: the baseline and the two the paper compares.
TABLE2_METHODS = ("prompt_dt", "prompt_tuning_dt", "prompt_diffuser")
# Table 3's methods: the same three (the paper's few-shot prompt, Prompt-
# Tuning DT and Prompt Diffuser).
TABLE3_METHODS = TABLE2_METHODS
# Table 3's family: ant-dir's goal directions on Prompt-DT's
# out-of-distribution split.
OOD_FAMILY = "ant_dir_10"
# Table 3's settings (pdiff.pipeline.paper_table3.SETTINGS), in column order.
TABLE3_SETTINGS = ("few_shot", "zero_shot")
# Prompt Diffuser's gradient combinations compared by the ablation.
ABLATION_MODES = ("dm_only", "dt_only", "sum", "projection")


def run_config(family: str, preset: str) -> ml_collections.ConfigDict:
  """The pipeline config of one family under ``preset``.

  ``tiny`` also shrinks what ``experiments/configs/run.py``'s tiny preset
  keeps (PLM pre-training steps), so that a point_robot run takes seconds.
  """
  c = run_configs.get_config(f"{family},{preset}")
  if preset == "tiny":
    c.pretrain.num_steps = 4
    c.pretrain.ckpt_every = 4
    c.pretrain.log_every = 2
  return c


def get_config(arg: str = "table1") -> ml_collections.ConfigDict:
  """The config of ``EXPERIMENT[,PRESET]``.

  Args:
    arg: ``"table1"``, ``"ablation"``, ``"table2"`` or ``"table3"``,
      optionally followed by ``",cpu"`` or ``",tiny"``.

  Returns:
    The experiment's ConfigDict.

  Raises:
    ValueError: an unknown experiment or preset (named with the allowed
      values).
  """
  experiment, _, preset = arg.partition(",")
  preset = preset or "cpu"
  if experiment not in EXPERIMENTS:
    raise ValueError(f"paper config: experiment must be one of {EXPERIMENTS}, "
                     f"got {experiment!r} (argument {arg!r}).")
  if preset not in PRESETS:
    raise ValueError(f"paper config: preset must be one of {PRESETS}, got "
                     f"{preset!r} (argument {arg!r}).")
  c = ml_collections.ConfigDict()
  # Which experiment: "table1" (methods x families), "ablation" (Prompt
  # Diffuser's gradient combinations), "table2" (few-shot data qualities) or
  # "table3" (out of distribution, few-shot and zero-shot).
  c.experiment = experiment
  # Preset of every family's run config (experiments/configs/run.py).
  c.preset = preset
  # Task families (pdiff.envs.make names), in table order; each runs in
  # {workdir}/{family}, shared by the experiments.
  if preset == "tiny":
    c.families = ("point_robot",)
  elif experiment == "table2":
    c.families = ("cheetah_vel",)
  elif experiment == "table3":
    c.families = (OOD_FAMILY,)
  else:
    c.families = PAPER_FAMILIES
  # Seeds of every family's run (statistics are over seeds).
  c.seeds = (0, 1, 2, 3, 4) if preset == "cpu" else (0,)
  # Tuning methods (pdiff.tuning.registry names), in table order; "prompt_dt"
  # is the baseline of table1's differences, "upper_bound" its normalisation.
  c.methods = {"table1": tuning.ALL_METHODS, "ablation": ("prompt_diffuser",),
               "table2": TABLE2_METHODS, "table3": TABLE3_METHODS}[experiment]
  # Prompt Diffuser's gradient combinations, one row each
  # (pdiff.tuning.prompt_diffuser.MODES); table2 and table3 have the paper's.
  c.modes = {"ablation": ABLATION_MODES, "table2": ("projection",),
             "table3": ("projection",)}.get(
                 experiment, tuple(tuning.prompt_diffuser_config().modes))
  # Prompt Diffuser's named settings beyond the paper's, one row each after
  # the modes' (pdiff.tuning.prompt_diffuser_method.NAMED_SETTINGS): pdiff's
  # setting chosen on cheetah-vel's validation tasks, in table1 and the
  # ablation; () leaves the paper's rows only.
  c.named_settings = (() if experiment in ("table2", "table3")
                      else ("evaluation_returns_scale_10",))
  # table2's few-shot data qualities, one pair of columns each.
  c.qualities = ("expert", "medium", "random")
  # table3's settings, three columns each: "few_shot" (few-shot data of the
  # test tasks) and "zero_shot" (drawn from the training tasks' data; run
  # config few_shot_source = "training_tasks").
  c.settings = TABLE3_SETTINGS
  # An earlier report of this experiment ({workdir}/paper/EXPERIMENT.json,
  # or a committed results/paper/EXPERIMENT.json) whose other families are
  # kept beside the ones computed now, so that a table is computed family by
  # family; its seeds, methods, modes, named settings (and qualities or
  # settings) must be this config's. "": none.
  c.merge = ""
  # Each family's pipeline config (experiments/configs/run.py:FAMILY,PRESET);
  # its methods, seeds and tuning.prompt_diffuser.modes and .named_settings
  # are replaced by the fields above.
  c.runs = ml_collections.ConfigDict(
      {family: run_config(family, preset) for family in c.families})
  return c
