"""The return curve's bookkeeping: resuming, refusing other settings."""

import json

import pytest

from pdiff import envs
from pdiff.evaluation import pretrained


def _settings(**changes):
  s = dict(family="point_robot", quality="expert", num_shots=5,
           num_episodes=1, seed=0, split="train")
  s.update(changes)
  return s


def _never(step):
  raise AssertionError(f"checkpoint {step} evaluated again")


def _write(path, settings, steps):
  points = [dict(step=s, return_mean=-1.0, dataset_return=-2.0,
                 shortfall=-0.5, tasks=[0], task_returns=[-1.0], seconds=0.0)
            for s in steps]
  path.write_text(json.dumps(dict(settings=settings, points=points)))


@pytest.mark.parametrize("steps", [[10], [10, 20]])
def test_measured_steps_are_not_evaluated_again(tmp_path, steps):
  path = tmp_path / "curve.json"
  _write(path, _settings(), [10, 20])
  curve = pretrained.return_curve(
      _never, steps, envs.make("point_robot"), str(tmp_path),
      path=str(path), quality="expert", num_shots=5, num_episodes=1, seed=0)
  assert [p["step"] for p in curve["points"]] == [10, 20]


@pytest.mark.parametrize("field,value", [("num_episodes", 3), ("seed", 1),
                                         ("quality", "medium")])
def test_a_curve_of_other_settings_is_refused(tmp_path, field, value):
  path = tmp_path / "curve.json"
  _write(path, _settings(), [10])
  kwargs = dict(quality="expert", num_shots=5, num_episodes=1, seed=0)
  kwargs[field] = value
  with pytest.raises(ValueError, match=f"{field}: .*now {value!r}"):
    pretrained.return_curve(_never, [10], envs.make("point_robot"),
                            str(tmp_path), path=str(path), **kwargs)
  assert json.loads(path.read_text())["settings"] == _settings()


def test_unknown_split_is_refused(tmp_path):
  with pytest.raises(ValueError, match="split must be"):
    pretrained.return_curve(_never, [10], envs.make("point_robot"),
                            str(tmp_path), path=str(tmp_path / "c.json"),
                            quality="expert", num_shots=5, num_episodes=1,
                            seed=0, split="validation")


@pytest.mark.parametrize("plm,data,want", [(-110.0, -100.0, 0.1),
                                           (90.0, 100.0, 0.1),
                                           (110.0, 100.0, -0.1)])
def test_shortfall_is_the_share_of_the_data_return(plm, data, want):
  assert pretrained.shortfall(plm, data) == pytest.approx(want)
