"""Config of ``experiments/selection.py``: Prompt Diffuser's settings chosen on
validation tasks held out of the training tasks, then reported on the test
tasks (``pdiff.pipeline.selection``).

Usage: ``--config=experiments/configs/selection.py:FAMILY[,PRESET]``
(cheetah_vel on its shipped PLM by default; ``tiny`` is a smoke run). The
run config (family, PLM, data, seeds, base Prompt Diffuser config) is
``run``; the selection's own fields are ``select``.
"""

import ml_collections

from experiments.configs import run as run_configs

# The settings compared by default: the paper's (the reference), L_DT read
# in the evaluation's returns-to-go (pdiff's variant), a larger guidance
# scale with either, and the guidance loss alone (mode "dt_only": no
# diffusion loss in fine-tuning).
VARIANTS = {
    "paper": {},
    "dt_only": dict(mode="dt_only"),
    "evaluation_returns": dict(guidance_returns="evaluation"),
    "scale_10": dict(guidance_scale=10.0),
    "evaluation_returns_scale_10": dict(guidance_returns="evaluation",
                                        guidance_scale=10.0),
}


def get_config(arg: str = "cheetah_vel,cpu") -> ml_collections.ConfigDict:
  family, _, preset = arg.partition(",")
  preset = preset or "cpu"
  c = ml_collections.ConfigDict()
  # The pipeline config whose PLM, data, seeds and Prompt Diffuser (the base
  # of every variant) are used (experiments/configs/run.py:FAMILY,PRESET).
  c.run = run_configs.get_config(f"{family},{preset}")
  s = ml_collections.ConfigDict()
  # Training tasks held out as validation tasks; empty: num_validation_tasks
  # of them, evenly spaced over the sorted training tasks.
  s.validation_tasks = ml_collections.config_dict.placeholder(tuple)
  s.num_validation_tasks = 5
  # Variants compared on the validation tasks: name -> overrides of
  # run.tuning.prompt_diffuser (unknown fields are refused).
  s.variants = ml_collections.ConfigDict(VARIANTS)
  # The variant kept on a tie and always reported on the test tasks beside
  # the chosen one (the paper's setting).
  s.reference = "paper"
  if preset == "tiny":
    s.num_validation_tasks = 2
    s.variants = ml_collections.ConfigDict({
        "paper": {}, "evaluation_returns": dict(guidance_returns="evaluation")})
  c.select = s
  return c
