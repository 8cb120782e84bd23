r"""Why Prompt Diffuser's guidance does not beat the few-shot prompt.

  python experiments/diagnose.py \
      --config=experiments/configs/diagnose.py:cheetah_vel \
      --workdir=runs/cheetah_vel

Measures, per test task and seed, on the run config's PLM and data: how
well L_DT ranks prompts by their rollout return (real windows and generated
candidates, in the data's and the evaluation's returns-to-go regimes), the
headroom of the best real window, the guidance and diffusion gradients over
fine-tuning, the per-feature error of generated windows, and Prompt
Diffuser's variants as pipeline runs (``pdiff.pipeline.diagnose``). Datasets,
the PLM and Prompt Diffuser's stage-1 models are shared by fingerprint with
``experiments/run.py`` in the same work directory. Writes
``{workdir}/diagnose/diagnose.{json,md}`` (docs/diagnosis.md). Append
``,tiny`` to the config argument for a smoke run.
"""

from experiments import launch
from pdiff.pipeline import diagnose

_CONFIG = launch.define_config("experiments/configs/diagnose.py",
                               "Diagnosis config.")
_WORKDIR = launch.define_workdir()
main = launch.report_main(
    _CONFIG, _WORKDIR,
    lambda config, workdir: diagnose.diagnose(config.run, config.diagnose, workdir),
    diagnose.markdown, "diagnose/diagnose.{json,md}")


if __name__ == "__main__":
  launch.run(main)
