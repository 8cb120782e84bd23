"""Tests of Prompt Diffuser (``pdiff.tuning.prompt_diffuser``) on point_robot.

The PLM is a tiny untrained Prompt-DT (its action loss still has gradients
with respect to the prompt, which is all the guidance needs); the diffusion
model uses the ``tiny`` preset of ``experiments/configs/tuning.py``. Every
fine-tuning variant is compiled once per module. The few-shot data of a task
is its 4 point_robot trajectories (20 steps each).
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import pretrain as pretrain_configs
from experiments.configs import prompt_diffuser as prompt_diffuser_configs
from experiments.configs import tuning as tuning_configs
from pdiff.pipeline.validate import PRETRAINED_ASSETS
from pdiff.training import pretrain as pretrain_lib
from pdiff.tuning import prompt_diffuser as pd
from tests.tuning import tiny_plm

FINETUNE_STEPS = 3


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  c = tuning_configs.get_config("prompt_diffuser", preset="tiny")
  c.finetune_steps = FINETUNE_STEPS
  c.finetune_lr = 1e-2  # large, so a few steps move the parameters visibly
  c.update(overrides)
  return c


@pytest.fixture(scope="module")
def setup():
  _COMPILED.clear()
  plm = tiny_plm.tiny_plm()
  train = tiny_plm.pooled_train_trajectories()
  # Pure, so it may run under jit: one compilation instead of many eager ops.
  model, params = jax.jit(lambda key: pd.make_prompt_diffuser(
      plm, train, tiny_config(), key))(jax.random.key(0))
  stacked, tasks = tiny_plm.stacked_test_trajectories(2)
  stacked = jax.tree.map(jnp.asarray, stacked)  # [2, N, T, ...]
  return plm, model, params, stacked, tasks


_COMPILED = {}  # jitted functions of the module's model, by variant

# Selection among 4 candidates, scored on the last of the 4 trajectories.
SELECTION = dict(num_candidates=4, selection_holdout=1, selection_batch=8)


def finetune_fn(model, plm, **overrides):
  name = ("finetune",) + tuple(sorted(overrides.items()))
  if name not in _COMPILED:
    _COMPILED[name] = jax.jit(
        pd.make_finetune(model, plm, tiny_config(**overrides)))
  return _COMPILED[name]


def generate_fn(model, plm, **overrides):
  name = ("generate",) + tuple(sorted(overrides.items()))
  if name not in _COMPILED:
    config = tiny_config(**overrides)
    _COMPILED[name] = jax.jit(
        lambda params, few_shot, key: pd.generate_prompt(
            model, plm, params, few_shot, key, config))
  return _COMPILED[name]


def first_task(stacked):
  return jax.tree.map(lambda x: x[0], stacked)


def replace_trajectory(few_shot, i, source, j):
  """``few_shot`` with its trajectory ``i`` replaced by ``source``'s ``j``."""
  return jax.tree.map(lambda x, y: x.at[i].set(y[j]), few_shot, source)


def params_differ(a, b, tol=1e-6) -> bool:
  return any(float(jnp.max(jnp.abs(x - y))) > tol
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                             strict=True))


def assert_bitwise_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("field,value", [
    ("mode", "pcgrad"), ("guidance_path", "two_step"), ("sampler", "euler"),
    ("schedule", "sigmoid"), ("train_position", "first"),
    ("condition_position", "middle"), ("guidance_position", "first"),
    ("num_candidates", 0), ("selection_batch", 0), ("num_bases", 0),
    ("num_diffusion_steps", 0), ("ddim_steps", 0), ("pretrain_batch", 0),
    ("finetune_batch", 0), ("guidance_batch", 0), ("pretrain_steps", -1),
    ("finetune_steps", -1), ("guidance_scale", -0.5), ("clip_denoised", -1.0),
    ("ddim_steps", 21),  # more than num_diffusion_steps (20)
    ("guidance_returns", "online"),
])
def test_check_config_names_the_bad_field(field, value):
  c = prompt_diffuser_configs.get_config()
  pd.check_config(c)  # the defaults are valid
  c[field] = value
  with pytest.raises(ValueError, match=field):
    pd.check_config(c)


def test_defaults_keep_the_one_prompt_at_the_plms_position():
  c = prompt_diffuser_configs.get_config()
  assert c.num_candidates == 1
  assert not c.allow_unread_positions
  for field in pd.POSITION_FIELDS:
    assert c[field] == pretrain_lib.PROMPT_POSITION == "last", field
  pd.check_positions(c, "last")
  pd.check_num_shots(c, 1)  # no selection: a single trajectory is enough


def test_selection_holdout_is_checked():
  c = prompt_diffuser_configs.get_config()
  c.selection_holdout = 0
  pd.check_config(c)  # not read without selection
  c.num_candidates = 2
  with pytest.raises(ValueError, match="selection_holdout"):
    pd.check_config(c)
  c.selection_holdout = 2
  pd.check_num_shots(c, 3)
  for num_shots in (1, 2):  # nothing would be left to fine-tune
    with pytest.raises(ValueError,
                       match=rf"selection_holdout is 2.*\({num_shots}\)"):
      pd.check_num_shots(c, num_shots)
  # Where the few-shot arrays are split (at trace time, from their shape).
  few_shot = first_task(tiny_plm.stacked_test_trajectories(1)[0])  # N = 4
  c.selection_holdout = 4
  with pytest.raises(ValueError, match="selection_holdout"):
    pd.split_few_shot(few_shot, c)
  c.selection_holdout = 3
  tune, held_out = pd.split_few_shot(few_shot, c)
  assert tune.lengths.shape == (1,) and held_out.lengths.shape == (3,)
  np.testing.assert_array_equal(held_out.observations,
                                few_shot.observations[1:])
  c.num_candidates = 1
  tune, held_out = pd.split_few_shot(few_shot, c)
  assert held_out is None and tune is few_shot


@pytest.mark.parametrize("field", pd.POSITION_FIELDS)
def test_check_positions_refuses_what_the_plm_cannot_read(field):
  c = prompt_diffuser_configs.get_config()
  c[field] = "random"
  with pytest.raises(ValueError) as info:
    pd.check_positions(c, "last")
  assert str(info.value) == (
      f"prompt_diffuser config: {field} is 'random', but the PLM was "
      "pre-trained on prompts at position 'last' "
      "(PretrainedPolicy.prompt_position) and was not trained to read prompt "
      f"windows placed otherwise. Set {field} = 'last' "
      "(allow_unread_positions = True skips this check, for diagnostics "
      "only).")
  pd.check_config(c)  # a valid position in itself
  c.allow_unread_positions = True
  pd.check_positions(c, "last")
  with pytest.raises(ValueError, match="'middle'"):
    pd.check_positions(c, "middle")  # not a position at all


def test_builders_refuse_positions_unlike_the_plms(setup):
  plm, model, *_ = setup
  # A PLM pre-trained on random windows: the "last" defaults are refused.
  random_plm = plm.replace(prompt_position="random")
  # A static field: part of the tree structure, not a leaf.
  assert jax.tree.structure(random_plm) != jax.tree.structure(plm)
  train = tiny_plm.pooled_train_trajectories()
  c = tiny_config()
  for build in (
      lambda: pd.make_prompt_diffuser(random_plm, train, c,
                                      jax.random.key(0)),
      lambda: pd.make_pretrain(model, random_plm, c, 1),
      lambda: pd.make_finetune(model, random_plm, c),
      lambda: pd.make_tune_tasks(model, random_plm, c)):
    with pytest.raises(ValueError, match=r"train_position is 'last'.*"
                       r"position 'random'"):
      build()
  with pytest.raises(ValueError, match=r"guidance_position is 'random'.*"
                     r"position 'last'"):
    pd.make_finetune(model, plm, tiny_config(guidance_position="random"))
  pd.make_finetune(model, plm, tiny_config(guidance_position="random",
                                           allow_unread_positions=True))


def test_make_finetune_checks_config_eagerly(setup):
  plm, model, *_ = setup
  with pytest.raises(ValueError, match="mode"):
    pd.make_finetune(model, plm, tiny_config(mode="both"))


def test_encode_decode_round_trip(setup):
  plm, model, _, stacked, _ = setup
  prompt = plm.sample_prompts(jax.random.key(3), first_task(stacked), 4,
                              position="random")
  x0, y = model.encode(prompt)
  assert np.all(np.abs(prompt.actions) <= 1.0)  # full windows, no padding
  ds, da = prompt.states.shape[-1], prompt.actions.shape[-1]
  assert x0.shape == (4, plm.prompt_len, ds + da + 1)
  assert y.shape == (4, plm.prompt_len, 2)
  back = model.decode(x0, y, ds)
  np.testing.assert_allclose(back.states, prompt.states, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(back.actions, prompt.actions, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(back.rewards, prompt.rewards, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(back.returns_to_go, prompt.returns_to_go)
  np.testing.assert_array_equal(back.timesteps, prompt.timesteps)
  np.testing.assert_array_equal(back.mask, 1.0)


def test_x0_is_standardised_on_training_windows(setup):
  """The statistics come from windows at ``train_position`` ("last")."""
  plm, model, *_ = setup
  x0, _ = jax.jit(lambda key, trajs: model.encode(plm.sample_prompts(
      key, trajs, 1024, position=tiny_config().train_position)))(
          jax.random.key(4), tiny_plm.pooled_train_trajectories())
  flat = np.asarray(x0).reshape(-1, x0.shape[-1])
  np.testing.assert_allclose(flat.mean(0), 0.0, atol=0.15)
  np.testing.assert_allclose(flat.std(0), 1.0, atol=0.15)


def test_pretrain_lowers_the_diffusion_loss(setup):
  plm, model, params, *_ = setup
  c = tiny_config(pretrain_lr=3e-3, pretrain_batch=32)
  pretrain, optimizer = pd.make_pretrain(model, plm, c, 200)
  train = jax.tree.map(jnp.asarray, tiny_plm.pooled_train_trajectories())
  new_params, _, losses = pretrain(params, optimizer.init(params), train,
                                   jax.random.key(5))
  losses = np.asarray(losses)
  assert losses.shape == (200,) and np.all(np.isfinite(losses))
  first, last = losses[:40].mean(), losses[-40:].mean()
  assert last < 0.8 * first, (first, last)
  assert params_differ(params, new_params)


def test_finetune_dm_only(setup):
  plm, model, params, stacked, _ = setup
  new_params, metrics = finetune_fn(model, plm, mode="dm_only")(
      params, first_task(stacked), jax.random.key(6))
  assert set(metrics) == {"dm_loss", "dt_loss", "cosine", "dm_grad_norm",
                          "dt_grad_norm"}
  for value in metrics.values():
    assert value.shape == (FINETUNE_STEPS,)
  assert np.all(np.isfinite(metrics["dm_loss"]))
  assert np.all(np.isnan(metrics["dt_loss"]))  # no guidance loss computed
  np.testing.assert_array_equal(metrics["cosine"], 0.0)
  np.testing.assert_array_equal(metrics["dt_grad_norm"], 0.0)
  assert np.all(metrics["dm_grad_norm"] > 0)
  assert params_differ(params, new_params)


@pytest.mark.parametrize("overrides", [
    dict(mode="projection", guidance_path="one_step", num_bases=2),
    dict(mode="sum", guidance_path="one_step"),
    dict(mode="dt_only", guidance_path="one_step"),
])
def test_guided_finetune_differs_from_dm_only(setup, overrides):
  plm, model, params, stacked, _ = setup
  few_shot, key = first_task(stacked), jax.random.key(7)
  base, base_metrics = finetune_fn(model, plm, mode="dm_only")(
      params, few_shot, key)
  guided, metrics = finetune_fn(model, plm, **overrides)(params, few_shot, key)
  for name in ("dm_loss", "dt_loss", "cosine", "dm_grad_norm",
               "dt_grad_norm"):
    assert np.all(np.isfinite(metrics[name])), name
  assert np.all(metrics["dt_loss"] >= 0)
  assert np.all(metrics["dt_grad_norm"] > 0)
  # Same parameters and keys at the first step: the same diffusion gradient.
  np.testing.assert_allclose(metrics["dm_grad_norm"][0],
                             base_metrics["dm_grad_norm"][0], rtol=1e-5)
  assert np.all(np.abs(metrics["cosine"]) <= 1.0 + 1e-6)
  # Same parameters and keys at the first step: the same diffusion loss.
  np.testing.assert_allclose(metrics["dm_loss"][0], base_metrics["dm_loss"][0],
                             rtol=1e-5)
  assert params_differ(guided, base, tol=1e-4)


def test_guidance_segments_in_the_evaluations_regime(setup):
  """Same key, same windows; only the returns-to-go change, to the target
  minus the rewards so far: evaluation - data = (target - the trajectory's
  return) / scale on every real step."""
  plm, _, _, stacked, _ = setup
  few_shot, key, target = first_task(stacked), jax.random.key(3), 7.0
  data = pd.guidance_segments(plm, few_shot, key, 16, tiny_config(), None)
  evaluation = pd.guidance_segments(
      plm, few_shot, key, 16, tiny_config(guidance_returns="evaluation"),
      target)
  for field in ("states", "actions", "rewards", "timesteps", "mask"):
    np.testing.assert_array_equal(getattr(data, field),
                                  getattr(evaluation, field), err_msg=field)
  totals = np.asarray(few_shot.rewards).sum(-1)  # [N]
  # The trajectory of each window, from its first real step's data returns.
  diff = np.asarray(evaluation.returns_to_go - data.returns_to_go)  # [B, K]
  mask = np.asarray(data.mask) > 0
  offsets = (target - totals) / plm.return_scale
  for row, m in zip(diff, mask, strict=True):
    assert np.ptp(row[m]) < 1e-5  # one offset per window
    assert np.min(np.abs(offsets - row[m][0])) < 1e-5
  assert not np.allclose(diff[mask], 0.0)


def test_evaluation_regime_changes_the_guidance_and_needs_the_target(setup):
  plm, model, params, stacked, _ = setup
  few_shot, key = first_task(stacked), jax.random.key(7)
  c = tiny_config(mode="sum", guidance_path="one_step",
                  guidance_returns="evaluation")
  with pytest.raises(ValueError, match="return_target"):
    pd.make_finetune(model, plm, c)
  with pytest.raises(ValueError, match="return_target"):
    pd.make_tune_tasks(model, plm, c)
  _, data = finetune_fn(model, plm, mode="sum", guidance_path="one_step")(
      params, few_shot, key)
  _, evaluation = jax.jit(pd.make_finetune(model, plm, c, return_target=7.0))(
      params, few_shot, key)
  # The same diffusion loss at the first step; another guidance loss.
  np.testing.assert_allclose(evaluation["dm_loss"][0], data["dm_loss"][0],
                             rtol=1e-6)
  assert abs(float(evaluation["dt_loss"][0] - data["dt_loss"][0])) > 1e-6


def test_dt_only_follows_the_guidance_alone(setup):
  """dt_only with lambda = 0 has a zero gradient: the parameters stay as
  they were (bitwise), while L_DM and L_DT are still measured."""
  plm, model, params, stacked, _ = setup
  tuned, metrics = finetune_fn(model, plm, mode="dt_only",
                               guidance_path="one_step", guidance_scale=0.0)(
      params, first_task(stacked), jax.random.key(8))
  assert_bitwise_equal(tuned, params)
  assert np.all(np.isfinite(metrics["dm_loss"]))
  assert np.all(np.isfinite(metrics["dt_loss"]))


def test_finetune_leaves_out_the_held_out_trajectories(setup):
  """With selection, the last trajectory never reaches L_DM or L_DT: changing
  it leaves the fine-tuned parameters bitwise unchanged, while changing a
  fine-tuning trajectory changes them."""
  plm, model, params, stacked, _ = setup
  few_shot, key = first_task(stacked), jax.random.key(11)
  other = jax.tree.map(lambda x: x[1], stacked)  # the second task's data
  finetune = finetune_fn(model, plm, mode="sum", guidance_path="one_step",
                         **SELECTION)
  tuned, metrics = finetune(params, few_shot, key)
  assert np.all(np.isfinite(metrics["dt_loss"]))
  same, _ = finetune(params, replace_trajectory(few_shot, 3, other, 0), key)
  assert_bitwise_equal(same, tuned)
  changed, _ = finetune(params, replace_trajectory(few_shot, 0, other, 0), key)
  assert params_differ(changed, tuned)


def test_tune_tasks_with_zero_guidance_equals_dm_only(setup):
  """``make_tune_tasks`` over two tasks, "projection" with lambda = 0 (the
  guidance still runs through the whole reverse chain), gives per task what
  dm_only fine-tuning and generation give with the same keys; the frozen
  PLM's parameters are bitwise what they were."""
  plm, model, params, stacked, _ = setup
  plm_before = jax.tree.map(np.array, plm.params)  # copies
  c = tiny_config(mode="projection", guidance_scale=0.0, num_bases=1)
  keys = jax.random.split(jax.random.key(8), 2)
  prompts, metrics = pd.make_tune_tasks(model, plm, c)(params, stacked, keys)
  assert prompts.states.shape == (2, plm.prompt_len, 2)
  assert prompts.actions.shape == (2, plm.prompt_len, 2)
  assert prompts.timesteps.shape == (2, plm.prompt_len)
  for name, value in metrics.items():
    assert value.shape == (2, FINETUNE_STEPS)
    assert np.all(np.isfinite(value)), name
  finetune = finetune_fn(model, plm, mode="dm_only")
  generate = generate_fn(model, plm)
  for m in range(2):
    few_shot = jax.tree.map(lambda x, m=m: x[m], stacked)
    k_ft, k_gen = jax.random.split(keys[m])
    tuned, ref_metrics = finetune(params, few_shot, k_ft)
    np.testing.assert_allclose(metrics["dm_loss"][m], ref_metrics["dm_loss"],
                               rtol=1e-4)
    expected = generate(tuned, few_shot, k_gen)
    jax.tree.map(lambda a, b, m=m: np.testing.assert_allclose(
        a[m], b, rtol=1e-3, atol=1e-3), prompts, expected)
  # Different tasks and keys give different prompts.
  assert not np.allclose(prompts.states[0], prompts.states[1])
  assert_bitwise_equal(plm.params, plm_before)


def test_condition_is_a_random_few_shot_window_like_the_baseline_prompt(
    setup):
  """The condition window is drawn as the few-shot baseline draws its
  prompt: with the same key it is that prompt, and different keys pick
  different trajectories (not always the best one)."""
  plm, _, _, stacked, _ = setup
  few_shot = first_task(stacked)
  returns = np.asarray(few_shot.rewards).sum(1)
  picked = []
  for seed in range(12):
    key = jax.random.key(seed)
    window = pd.condition_window(plm, few_shot, key, "last")
    baseline = plm.few_shot_prompt(key, few_shot).prompt
    assert_bitwise_equal(jax.tree.map(lambda x: x[0], window), baseline)
    # Which trajectory: returns-to-go at the window's start are its rewards
    # from there on.
    start = int(window.timesteps[0, 0])
    rtg = np.asarray(few_shot.rewards)[:, start:].sum(1) / plm.return_scale
    picked.append(int(np.argmin(np.abs(rtg - float(
        window.returns_to_go[0, 0])))))
  assert len(set(returns.round(6))) == len(returns)  # trajectories differ
  assert len(set(picked)) > 1, picked
  assert set(picked) != {int(np.argmax(returns))}


def test_generate_prompt_keeps_the_condition(setup):
  plm, model, params, stacked, _ = setup
  few_shot, key = first_task(stacked), jax.random.key(9)
  k_cond, _, _ = jax.random.split(key, 3)
  window = pd.condition_window(plm, few_shot, k_cond, "last")
  prompt = generate_fn(model, plm)(params, few_shot, key)
  assert prompt.states.shape == (plm.prompt_len, 2)
  np.testing.assert_array_equal(prompt.timesteps, window.timesteps[0])
  np.testing.assert_allclose(prompt.returns_to_go, window.returns_to_go[0],
                             rtol=1e-6)
  np.testing.assert_array_equal(prompt.mask, 1.0)
  assert np.all(np.abs(prompt.actions) <= 1.0)
  other = generate_fn(model, plm)(params, few_shot, jax.random.key(10))
  assert not np.allclose(other.states, prompt.states)  # sampled from noise


def test_one_candidate_is_the_single_sample(setup):
  """``num_candidates = 1``: the prompt is the one sample drawn from the
  condition, as sampling directly with the same keys gives it."""
  plm, model, params, stacked, _ = setup
  few_shot, key = first_task(stacked), jax.random.key(12)
  config = tiny_config()
  assert config.num_candidates == 1
  prompt = generate_fn(model, plm)(params, few_shot, key)
  k_cond, k_gen, _ = jax.random.split(key, 3)
  window = plm.sample_prompts(k_cond, few_shot, 1, position="last")
  _, y = model.encode(window)
  direct = model.decode(model.sample(params, y, k_gen, config), y,
                        plm.state_mean.shape[0])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b[0], rtol=1e-5, atol=1e-5), prompt, direct)


def numpy_scores(plm, candidates, segments):
  apply = jax.jit(plm.apply)
  losses = []
  for g in range(candidates.states.shape[0]):
    cand = jax.tree.map(lambda x, g=g: x[g:g + 1], candidates)
    pred = np.asarray(apply(plm.params, segments, cand))
    err = ((pred - np.asarray(segments.actions)) ** 2).mean(-1)
    mask = np.asarray(segments.mask)
    losses.append((err * mask).sum() / mask.sum())
  return np.asarray(losses)


def test_selection_scores_candidates_on_held_out_trajectories_only(setup):
  plm, model, params, stacked, _ = setup
  few_shot, key = first_task(stacked), jax.random.key(3)
  other = jax.tree.map(lambda x: x[1], stacked)
  config = tiny_config(**SELECTION)
  generate = generate_fn(model, plm, **SELECTION)
  prompt = generate(params, few_shot, key)
  # Rebuild the candidates and their scores independently, with the same
  # keys: segments of the held-out (last) trajectory only.
  k_cond, k_gen, k_sel = jax.random.split(key, 3)
  window = pd.condition_window(plm, few_shot, k_cond, "last")
  candidates = jax.jit(lambda w, k: pd.generate_candidates(
      model, plm, params, w, k, config))(window, k_gen)
  held_out = jax.tree.map(lambda x: x[3:], few_shot)
  segments = plm.sample_segments(k_sel, held_out, 8)
  losses = numpy_scores(plm, candidates, segments)
  assert len(set(np.round(losses, 8))) > 1  # the candidates differ
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b[int(np.argmin(losses))], rtol=1e-6), prompt, candidates)
  scores_fn = jax.jit(lambda held_out: pd.selection_scores(
      plm, candidates, plm.sample_segments(k_sel, held_out, 8)))
  np.testing.assert_allclose(scores_fn(held_out), losses, rtol=1e-5)
  # The states and actions of the fine-tuning trajectories play no part in
  # generation (their rewards may give the condition's returns-to-go).
  scrambled = few_shot._replace(
      observations=few_shot.observations.at[:3].add(7.0),
      actions=few_shot.actions.at[:3].multiply(-1.0))
  assert_bitwise_equal(generate(params, scrambled, key), prompt)
  # The held-out trajectory decides: replacing it by others changes the
  # scores, and the choice follows them.
  choices = {int(np.argmin(losses))}
  for j in range(4):
    replaced = replace_trajectory(few_shot, 3, other, j)
    new_held_out = jax.tree.map(lambda x: x[3:], replaced)
    scores = np.asarray(scores_fn(new_held_out))
    assert not np.allclose(scores, losses)
    choices.add(int(np.argmin(scores)))
  assert len(choices) > 1, choices


def test_policy_json_records_the_prompt_position(tmp_path):
  family = tiny_plm.family()
  config = pretrain_configs.get_config("point_robot,tiny")
  pretrain_lib._write_policy_info(str(tmp_path), config, family,
                                  np.zeros(2), np.ones(2))
  with open(tmp_path / pretrain_lib.POLICY_FILE) as f:
    assert json.load(f)["prompt_position"] == pretrain_lib.PROMPT_POSITION
  assert pretrain_lib.read_policy_info(str(tmp_path))["prompt_position"] == (
      "last")
  # A copy of the shipped PLM whose policy.json predates the field.
  src = os.path.join(PRETRAINED_ASSETS, "cheetah_vel_cpu")
  with open(os.path.join(src, pretrain_lib.POLICY_FILE)) as f:
    shipped = json.load(f)
  shipped.pop("prompt_position", None)
  workdir = str(tmp_path / "plm")
  shutil.copytree(src, workdir)
  path = os.path.join(workdir, pretrain_lib.POLICY_FILE)
  with open(path, "w") as f:
    json.dump(shipped, f)
  assert pretrain_lib.load_pretrained_policy(workdir).prompt_position == "last"
  for value in ("random", "last"):
    with open(path, "w") as f:
      json.dump(dict(shipped, prompt_position=value), f)
    plm = pretrain_lib.load_pretrained_policy(workdir)
    assert plm.prompt_position == value
  with open(path, "w") as f:
    json.dump(dict(shipped, prompt_position="middle"), f)
  with pytest.raises(ValueError, match="prompt_position is 'middle'"):
    pretrain_lib.read_policy_info(workdir)


def test_a_rows_config_names_its_own_mode_only():
  """The same mode's row has the same config (so the same run fingerprint)
  whatever list of modes it appears in."""
  from experiments.configs import tuning as tuning_configs
  from pdiff.tuning import prompt_diffuser_method

  config = tuning_configs.get_config("prompt_diffuser")
  config.modes = ("dm_only", "dt_only", "sum", "projection")
  alone = tuning_configs.get_config("prompt_diffuser")
  alone.modes = ("sum",)
  rows = dict(prompt_diffuser_method.variants(config))
  assert rows["sum"].to_dict() == dict(prompt_diffuser_method.variants(alone))[
      "sum"].to_dict()
  assert rows["sum"].modes == ("sum",) and rows["sum"].mode == "sum"


def test_named_settings_are_rows_of_their_own_after_the_modes():
  """A named setting is one more row, whose config is the base config under
  the setting's overrides: stage-2 fields only (so it shares the seed's
  stage-1 model), and no ``named_settings`` field in any row (so a row's run
  fingerprint does not depend on which settings are listed)."""
  from experiments.configs import selection as selection_configs
  from experiments.configs import tuning as tuning_configs
  from pdiff.tuning import prompt_diffuser_method as method

  config = tuning_configs.get_config("prompt_diffuser")
  config.named_settings = ("evaluation_returns_scale_10",)
  method.check_config(config)
  rows = method.variants(config)
  assert [name for name, _ in rows] == [*config.modes,
                                        "evaluation_returns_scale_10"]
  plain = dict(method.variants(tuning_configs.get_config("prompt_diffuser")))
  for name, row in rows:
    assert "named_settings" not in row
    if name in plain:
      assert row.to_dict() == plain[name].to_dict()
  setting = dict(rows)["evaluation_returns_scale_10"]
  overrides = method.NAMED_SETTINGS["evaluation_returns_scale_10"].overrides
  expected = plain["projection"].to_dict()
  expected.update(overrides)
  assert setting.to_dict() == expected
  assert setting.modes == ("projection",)
  assert method.stage1_config(setting) == method.stage1_config(config)
  for name, s in method.NAMED_SETTINGS.items():
    assert set(s.overrides) <= set(method.STAGE2_FIELDS), name
    assert s.origin
  # The setting is the one experiments/selection.py compares under that name.
  chosen = dict(overrides)
  del chosen["mode"]
  assert selection_configs.get_config().select.variants[
      "evaluation_returns_scale_10"].to_dict() == chosen


@pytest.mark.parametrize("names, match", [
    (("bogus",), "named_settings must be distinct names among"),
    (("evaluation_returns_scale_10",) * 2, "named_settings must be distinct"),
])
def test_bad_named_settings_are_refused(names, match):
  from experiments.configs import tuning as tuning_configs
  from pdiff.tuning import prompt_diffuser_method as method

  config = tuning_configs.get_config("prompt_diffuser")
  config.named_settings = names
  with pytest.raises(ValueError, match=match):
    method.check_config(config)
