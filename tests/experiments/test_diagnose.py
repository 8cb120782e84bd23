"""The diagnosis of Prompt Diffuser's guidance (``pdiff.pipeline.diagnose``):
its measurements on hand-made inputs, and the whole report with the ``tiny``
preset on point_robot."""

import json
import os

import jax
import numpy as np
import pytest

from experiments.configs import diagnose as diagnose_configs
from pdiff.data import samplers
from pdiff.models.policy import masked_action_mse
from pdiff.pipeline import diagnose, variants
from pdiff.types import Segments, Trajectories

pytestmark = pytest.mark.xdist_group("pipeline")


def trajectories(rewards, lengths, ds=2, da=1):
  rewards = np.asarray(rewards, np.float32)
  n, t = rewards.shape
  obs = np.arange(n * t * ds, dtype=np.float32).reshape(n, t, ds)
  return Trajectories(observations=obs, actions=np.zeros((n, t, da),
                                                         np.float32),
                      rewards=rewards, dones=np.zeros((n, t), bool),
                      timeouts=np.zeros((n, t), bool),
                      lengths=np.asarray(lengths, np.int32))


def test_evaluation_returns_to_go_subtract_the_rewards_so_far():
  trajs = trajectories([[1.0, 2.0, 3.0, 0.0], [5.0, 0.0, 0.0, 0.0]], [3, 1])
  rtg = np.asarray(samplers.evaluation_returns_to_go(trajs, 10.0))
  np.testing.assert_allclose(rtg, [[10, 9, 7, 0], [10, 0, 0, 0]])


def test_evaluation_regime_differs_from_the_data_only_in_returns_to_go():
  trajs = trajectories(np.ones((3, 6)), [6, 6, 4])
  rtg = samplers.evaluation_returns_to_go(trajs, 20.0)
  kw = dict(return_scale=10.0, state_mean=None, state_std=None, max_ep_len=8)
  key = jax.random.key(0)
  data = samplers.sample_segments(key, trajs, 16, 3, **kw)
  evaluation = samplers.sample_segments(key, trajs, 16, 3, rtg=rtg, **kw)
  for field in ("states", "actions", "rewards", "timesteps", "mask"):
    np.testing.assert_array_equal(getattr(data, field),
                                  getattr(evaluation, field))
  # Rewards of 1 per step: the data's rtg is (length - t) / 10, the
  # evaluation's (20 - t) / 10, where the window holds real steps.
  real = np.asarray(evaluation.mask) > 0
  t = np.asarray(evaluation.timesteps)
  np.testing.assert_allclose(np.asarray(evaluation.returns_to_go)[real],
                             ((20.0 - t) / 10.0)[real], rtol=1e-6)
  assert not np.allclose(np.asarray(data.returns_to_go)[real],
                         np.asarray(evaluation.returns_to_go)[real])


def test_spearman_and_its_undefined_cases():
  assert diagnose.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1)
  assert diagnose.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
  assert diagnose.spearman([1, 1, 1], [1, 2, 3]) is None
  assert diagnose.spearman([1, 2], [1, 2]) is None
  assert diagnose.spearman([1, 2, np.nan, 4], [1, 2, 3, 4]) == pytest.approx(1)


def segments(values, k=2):
  values = np.asarray(values, np.float32)  # [B]
  b = values.shape[0]
  ones = np.ones((b, k), np.float32)
  return Segments(states=(values[:, None, None] * np.ones((b, k, 2))),
                  actions=values[:, None, None] * np.ones((b, k, 1)),
                  rewards=values[:, None] * ones, returns_to_go=ones,
                  timesteps=np.zeros((b, k), np.int32), mask=ones)


def test_feature_error_is_zero_for_the_real_windows_and_scaled_by_their_std():
  real = segments([0.0, 2.0, 100.0])
  valid = np.array([True, True, False])  # the third window is padding
  np.testing.assert_allclose(diagnose.feature_error(segments([0.0, 2.0]),
                                                    real, valid), 0.0)
  # Shifted by 1 = one std of the valid real windows (std 1).
  np.testing.assert_allclose(diagnose.feature_error(segments([1.0, 3.0]),
                                                    real, valid), 1.0,
                             rtol=1e-5)


def test_dt_losses_scores_each_prompt_on_shared_segments():
  from tests.tuning import tiny_plm

  plm, trajs = tiny_plm.tiny_plm(), tiny_plm.pooled_train_trajectories()
  segs = plm.sample_segments(jax.random.key(1), trajs, 4)
  prompts = plm.sample_prompts(jax.random.key(2), trajs, 3)
  losses = np.asarray(diagnose.dt_losses(plm, prompts, segs))
  assert losses.shape == (3,) and np.all(np.isfinite(losses))
  for c in range(3):
    one = jax.tree.map(lambda x, c=c: x[c:c + 1], prompts)
    out = plm.apply(plm.params, segs, one)
    want = float(masked_action_mse(out, segs.actions, segs.mask))
    assert losses[c] == pytest.approx(want, rel=1e-4)


def test_unknown_regime_and_reference_are_named():
  trajs = trajectories(np.ones((1, 3)), [3])
  with pytest.raises(ValueError, match="regime must be one of"):
    diagnose.regime_segments(None, trajs, jax.random.key(0), 2, "online", 0.)
  with pytest.raises(ValueError, match="reference variant 'x'"):
    variants.run_variants(None, None, {"a": {}}, "x", "", {}, {}, [])


def test_tiny_diagnosis_on_point_robot(tmp_path):
  config = diagnose_configs.get_config("point_robot,tiny")
  config.run.pretrain.num_steps = 4
  config.run.pretrain.ckpt_every = 4
  config.diagnose.modes = ("projection",)
  config.diagnose.variants = {"projection": {"mode": "projection"}}
  report = diagnose.diagnose(config.run, config.diagnose, str(tmp_path))
  tests = [str(t) for t in report["test_tasks"]]
  assert list(report["summary"]["tasks"]) == tests
  seed = report["per_seed"]["0"]
  for t in tests:
    task = seed[t]
    real = task["real_windows"]
    n = len(real["returns"])
    assert 1 <= n <= config.diagnose.real_windows
    assert real["best_return"] == pytest.approx(max(real["returns"]))
    assert real["headroom"] == pytest.approx(real["best_return"]
                                             - task["few_shot_return"])
    for regime in diagnose.REGIMES:
      assert len(real[f"dt_loss_{regime}"]) == n
      assert all(v >= 0 for v in real[f"dt_loss_{regime}"])
    cand = task["modes"]["projection"]
    assert len(cand["returns"]) == config.diagnose.candidates
    assert len(cand["feature_error"]) == len(report["feature_names"]) == 5
  grads = report["summary"]["gradients"]["projection"]
  assert grads["norm_ratio"]["mean"] > 0
  assert -1 <= grads["cosine"]["mean"] <= 1
  rows = report["variants"]
  assert set(rows) == {"prompt_dt", "diagnose/projection"}
  assert "difference_to_prompt_dt" in rows["diagnose/projection"]
  out = tmp_path / "diagnose"
  assert json.loads((out / "diagnose.json").read_text())["family"] == (
      "point_robot")
  text = (out / "diagnose.md").read_text()
  assert "| task | few-shot return |" in text and "diagnose/projection" in text
  assert os.path.exists(tmp_path / "results" / "runs")
