"""Tests of the online prompt bandit (``pdiff.tuning.prompt_bandit``).

Budgets and the choice of the best arm are checked with fake rollouts whose
returns depend on the arm played; the batched rollout of a tiny untrained
PLM on point_robot checks the method end to end.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import tuning as tuning_configs
from pdiff.data.prompts import last_segment_prompt
from pdiff.evaluation.rollout import evaluate_tuned
from pdiff.models.policy import TunedPolicy
from pdiff.tuning import prompt_bandit as pb
from pdiff.tuning import registry
from tests.tuning import tiny_plm

EPISODES = 2  # episodes per round of every real rollout (one compilation)


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  c = tuning_configs.get_config("prompt_bandit")
  c.online_episodes = 40
  c.episodes_per_round = EPISODES
  c.update(overrides)
  return c


@pytest.fixture(scope="module")
def setup():
  plm = tiny_plm.tiny_plm()
  stacked, tasks = tiny_plm.stacked_test_trajectories(2)
  stacked = jax.tree.map(jnp.asarray, stacked)  # [2, N, T, ...]
  keys = jax.random.split(jax.random.key(5), 2)
  return plm, stacked, tasks, keys


def context_with(plm, tasks, rollout):
  return registry.TuningContext(plm=plm, family=tiny_plm.family(),
                                train_trajs=None, test_tasks=tuple(tasks),
                                rollout=rollout)


def real_rollout(plm, tasks):
  fam = tiny_plm.family()

  def rollout(params, prompts, key, num_episodes, params_per_task=False):
    return evaluate_tuned(plm, fam, TunedPolicy(params=params, prompt=prompts),
                          list(tasks), key, num_episodes=num_episodes,
                          params_per_task=params_per_task).returns

  return rollout


class ArmRollout:
  """A fake rollout: task ``m`` playing arm ``a`` returns ``values[m, a]``
  plus N(0, noise^2) per episode; it logs every call."""

  def __init__(self, arms, values, noise=0.1, seed=0):
    self.arms = jax.tree.map(np.asarray, arms)  # [M, A, K*, ...]
    self.values = np.asarray(values)  # [M, A]
    self.noise = noise
    self.rng = np.random.default_rng(seed)
    self.calls = []  # (num_episodes, arms played [M])

  def arm_of(self, prompts) -> np.ndarray:
    states = np.asarray(prompts.states)  # [M, K*, ds]
    played = []
    for m in range(states.shape[0]):
      same = [np.array_equal(states[m], self.arms.states[m, a])
              for a in range(self.arms.states.shape[1])]
      assert sum(same) == 1, "the prompt is not exactly one arm"
      played.append(int(np.argmax(same)))
    return np.array(played)

  def __call__(self, params, prompts, key, num_episodes, params_per_task):
    assert not params_per_task
    played = self.arm_of(prompts)
    self.calls.append((num_episodes, played))
    mean = self.values[np.arange(len(played)), played]  # [M]
    noise = self.noise * self.rng.normal(size=(len(played), num_episodes))
    return jnp.asarray(mean[:, None] + noise, jnp.float32)


def test_registered():
  method = registry.get("prompt_bandit")
  assert method.online_episodes(tiny_config(online_episodes=24)) == 24
  assert method.information(tiny_config()) == "few-shot + 40 online episodes"
  assert method.trainable_parameters(None, tiny_config()) == 0
  assert not method.diagnostic and method.data == "few_shot"


@pytest.mark.parametrize("field,value", [
    ("online_episodes", 0), ("episodes_per_round", 0),
    ("episodes_per_round", 41), ("windows_per_trajectory", 0),
    ("arm_stride", 0), ("exploration", -1.0), ("exploration", float("inf")),
    ("online_episodes", 2.5),
])
def test_bad_field_is_named(field, value):
  c = ml_collections.ConfigDict({**tiny_config().to_dict(), field: value})
  with pytest.raises(ValueError, match=field):
    pb.check_config(c)


def test_unknown_field_is_named():
  c = tiny_config()
  c.rounds = 3
  with pytest.raises(ValueError, match="rounds"):
    pb.check_config(c)


def test_first_arms_are_prompt_dt_windows(setup):
  plm, stacked, _, _ = setup
  trajs = jax.tree.map(lambda x: x[0], stacked)  # [N, T, ...]
  n = trajs.lengths.shape[0]
  arms, valid = pb.window_arms(plm, trajs, 3, stride=2)
  assert arms.states.shape[:2] == (3 * n, plm.prompt_len)
  assert bool(np.all(valid))
  for i in range(n):
    want = last_segment_prompt(
        trajs, jnp.array([i]), plm.prompt_len, return_scale=plm.return_scale,
        state_mean=plm.state_mean, state_std=plm.state_std,
        max_ep_len=plm.max_ep_len)
    for got, ref in zip(arms, want, strict=True):
      np.testing.assert_allclose(np.asarray(got[i]), np.asarray(ref[0]),
                                 rtol=1e-6, atol=1e-6)
  # window j of trajectory n ends j * stride steps before window 0
  last = int(trajs.lengths[0]) - plm.prompt_len - 1 + plm.prompt_len - 1
  assert int(arms.timesteps[0, -1]) == last
  assert int(arms.timesteps[n, -1]) == last - 2
  assert int(arms.timesteps[2 * n, -1]) == last - 4


def test_short_and_empty_trajectories_give_invalid_arms(setup):
  plm, stacked, _, _ = setup
  trajs = jax.tree.map(lambda x: x[0, :3], stacked)
  k = plm.prompt_len
  # trajectory 1 fits only its last window, trajectory 2 is padding
  trajs = trajs._replace(lengths=jnp.array([20, k + 1, 0], jnp.int32))
  _, valid = pb.window_arms(plm, trajs, 2)
  np.testing.assert_array_equal(np.asarray(valid),
                                [True, True, False, True, False, False])


def test_ucb_plays_every_arm_first_then_the_best_index():
  valid = jnp.array([[True, True, False, True]])
  counts = jnp.zeros((1, 4))
  sums = jnp.zeros((1, 4))
  order = []
  for _ in range(3):
    a = int(pb.ucb_choice(counts, sums, valid, 10.0, 1.0)[0])
    order.append(a)
    counts = counts.at[0, a].add(2.0)
    sums = sums.at[0, a].add({0: -8.0, 1: -2.0, 3: -6.0}[a])
  assert order == [0, 1, 3]  # unplayed valid arms first, lowest index first
  # equal counts: the bonus is equal, the best mean (arm 1) wins
  assert int(pb.ucb_choice(counts, sums, valid, 10.0, 1.0)[0]) == 1
  arm, mean = pb.best_arm(counts, sums, valid)
  assert int(arm[0]) == 1 and float(mean[0]) == -1.0
  # ties of means go to the lowest index
  arm, _ = pb.best_arm(counts, jnp.array([[-2.0, -2.0, 0.0, -2.0]]), valid)
  assert int(arm[0]) == 0


def test_earlier_windows_need_a_plm_of_random_prompt_positions(setup):
  plm, _, tasks, _ = setup
  assert plm.prompt_position == "last"
  with pytest.raises(ValueError, match="windows_per_trajectory"):
    pb.make_tune(context_with(plm, tasks, lambda *a: None),
                 tiny_config(windows_per_trajectory=2))


def test_budget_is_never_exceeded(setup):
  plm, stacked, tasks, keys = setup
  plm = plm.replace(prompt_position="random")  # earlier windows are arms
  arms, _ = pb.task_arms(plm, stacked, 2)
  fake = ArmRollout(arms, np.zeros(arms.mask.shape[:2]))
  config = tiny_config(online_episodes=7, episodes_per_round=2,
                       windows_per_trajectory=2)
  tune = pb.make_tune(context_with(plm, tasks, fake), config)
  _, metrics = tune(None, stacked, keys)
  episodes = sum(n for n, _ in fake.calls)
  assert len(fake.calls) == 3  # one batched call per round, 7 // 2 rounds
  assert episodes == 6 <= registry.get("prompt_bandit").online_episodes(config)
  assert metrics["chosen_mean_return"].shape == (2, 3)


@pytest.mark.parametrize("exploration", [1.0, 0.2])
def test_finds_the_best_arm(setup, exploration):
  plm, stacked, tasks, keys = setup
  plm = plm.replace(prompt_position="random")  # earlier windows are arms
  arms, valid = pb.task_arms(plm, stacked, 2)
  num_arms = arms.mask.shape[1]
  assert bool(np.all(valid)) and num_arms == 8
  # returns in point_robot's units: one arm per task is clearly better
  values = np.full((2, num_arms), -8.0)
  values[0, 5], values[1, 2] = -2.0, -1.0
  values[0, 1] = -5.0
  fake = ArmRollout(arms, values, noise=1.0)
  tune = pb.make_tune(context_with(plm, tasks, fake),
                      tiny_config(exploration=exploration,
                                  windows_per_trajectory=2))
  tuned, metrics = tune(None, stacked, keys)
  np.testing.assert_array_equal(fake.arm_of(tuned.prompt), [5, 2])
  assert tuned.params is plm.params
  played = np.stack([p for _, p in fake.calls])  # [rounds, M]
  assert played.shape == (20, 2)
  for m, best in ((0, 5), (1, 2)):
    # every arm is tried once first ...
    assert set(played[:num_arms, m]) == set(range(num_arms))
    if exploration < 1.0:
      # ... then, with a bonus below the scaled gap of 0.6, the best one
      assert np.sum(played[num_arms:, m] == best) >= 8
  chosen = np.asarray(metrics["chosen_mean_return"])
  assert chosen.shape == (2, 20)
  np.testing.assert_allclose(chosen[:, -1], [-2.0, -1.0], atol=1.0)


def test_one_arm_is_returned_with_the_real_rollout(setup):
  plm, stacked, tasks, keys = setup
  one = jax.tree.map(lambda x: x[:, :1], stacked)  # one trajectory per task
  config = tiny_config(online_episodes=2 * EPISODES)
  tune = pb.make_tune(context_with(plm, tasks, real_rollout(plm, tasks)),
                      config)
  tuned, metrics = tune(None, one, keys)
  arms, _ = pb.task_arms(plm, one, 1)
  for got, want in zip(tuned.prompt, arms, strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want[:, 0]))
  chosen = np.asarray(metrics["chosen_mean_return"])
  assert chosen.shape == (2, 2) and np.all(np.isfinite(chosen))
