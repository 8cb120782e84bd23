"""Tests of Prompt Diffuser (``pdiff.tuning.prompt_diffuser``) on point_robot.

The PLM is a tiny untrained Prompt-DT (its action loss still has gradients
with respect to the prompt, which is all the guidance needs); the diffusion
model uses the ``point_robot,tiny`` preset of ``experiments/configs/run.py``.
Every fine-tuning variant is compiled once per module.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import run as run_configs
from pdiff.tuning import prompt_diffuser as pd
from tests.tuning import tiny_plm

FINETUNE_STEPS = 3


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  c = run_configs.get_config("point_robot,tiny").prompt_diffuser
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


def finetune_fn(model, plm, **overrides):
  name = ("finetune",) + tuple(sorted(overrides.items()))
  if name not in _COMPILED:
    _COMPILED[name] = jax.jit(
        pd.make_finetune(model, plm, tiny_config(**overrides)))
  return _COMPILED[name]


def generate_fn(model, plm):
  if "generate" not in _COMPILED:
    config = tiny_config()
    _COMPILED["generate"] = jax.jit(
        lambda params, few_shot, key: pd.generate_prompt(
            model, plm, params, few_shot, key, config))
  return _COMPILED["generate"]


def first_task(stacked):
  return jax.tree.map(lambda x: x[0], stacked)


def params_differ(a, b, tol=1e-6) -> bool:
  return any(float(jnp.max(jnp.abs(x - y))) > tol
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                             strict=True))


@pytest.mark.parametrize("field,value", [
    ("mode", "pcgrad"), ("guidance_path", "two_step"), ("sampler", "euler"),
    ("schedule", "sigmoid"), ("train_position", "first"),
    ("condition_position", "middle"), ("guidance_position", "first"),
    ("num_candidates", 0), ("selection_batch", 0), ("num_bases", 0),
    ("num_diffusion_steps", 0), ("ddim_steps", 0), ("pretrain_batch", 0),
    ("finetune_batch", 0), ("guidance_batch", 0), ("pretrain_steps", -1),
    ("finetune_steps", -1), ("guidance_scale", -0.5), ("clip_denoised", -1.0),
    ("ddim_steps", 21),  # more than num_diffusion_steps (20)
])
def test_check_config_names_the_bad_field(field, value):
  c = pd.get_config()
  pd.check_config(c)  # the defaults are valid
  c[field] = value
  with pytest.raises(ValueError, match=field):
    pd.check_config(c)


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
  plm, model, *_ = setup
  x0, _ = jax.jit(lambda key, trajs: model.encode(plm.sample_prompts(
      key, trajs, 1024, position="random")))(
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
  assert set(metrics) == {"dm_loss", "dt_loss", "cosine"}
  for value in metrics.values():
    assert value.shape == (FINETUNE_STEPS,)
  assert np.all(np.isfinite(metrics["dm_loss"]))
  assert np.all(np.isnan(metrics["dt_loss"]))  # no guidance loss computed
  np.testing.assert_array_equal(metrics["cosine"], 0.0)
  assert params_differ(params, new_params)


@pytest.mark.parametrize("overrides", [
    dict(mode="projection", guidance_path="one_step", num_bases=2),
    dict(mode="sum", guidance_path="one_step"),
])
def test_guided_finetune_differs_from_dm_only(setup, overrides):
  plm, model, params, stacked, _ = setup
  few_shot, key = first_task(stacked), jax.random.key(7)
  base, base_metrics = finetune_fn(model, plm, mode="dm_only")(
      params, few_shot, key)
  guided, metrics = finetune_fn(model, plm, **overrides)(params, few_shot, key)
  for name in ("dm_loss", "dt_loss", "cosine"):
    assert np.all(np.isfinite(metrics[name])), name
  assert np.all(metrics["dt_loss"] >= 0)
  assert np.all(np.abs(metrics["cosine"]) <= 1.0 + 1e-6)
  # Same parameters and keys at the first step: the same diffusion loss.
  np.testing.assert_allclose(metrics["dm_loss"][0], base_metrics["dm_loss"][0],
                             rtol=1e-5)
  assert params_differ(guided, base, tol=1e-4)


def test_tune_tasks_with_zero_guidance_equals_dm_only(setup):
  """``make_tune_tasks`` over two tasks, "projection" with lambda = 0 (the
  guidance still runs through the whole reverse chain), gives per task what
  dm_only fine-tuning and generation give with the same keys."""
  plm, model, params, stacked, _ = setup
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


def test_generate_prompt_keeps_the_condition(setup):
  plm, model, params, stacked, _ = setup
  few_shot = first_task(stacked)
  window = pd.condition_window(plm, few_shot, "last")
  # The condition comes from the trajectory with the highest return.
  returns = np.asarray(few_shot.rewards).sum(1)
  best = int(np.argmax(returns))
  expected = plm.sample_prompts(jax.random.key(0),
                                jax.tree.map(lambda x: x[best:best + 1],
                                             few_shot), 1, position="last")
  jax.tree.map(np.testing.assert_array_equal, window, expected)
  prompt = generate_fn(model, plm)(params, few_shot, jax.random.key(9))
  assert prompt.states.shape == (plm.prompt_len, 2)
  np.testing.assert_array_equal(prompt.timesteps, window.timesteps[0])
  np.testing.assert_allclose(prompt.returns_to_go, window.returns_to_go[0],
                             rtol=1e-6)
  np.testing.assert_array_equal(prompt.mask, 1.0)
  assert np.all(np.abs(prompt.actions) <= 1.0)
  other = generate_fn(model, plm)(params, few_shot, jax.random.key(10))
  assert not np.allclose(other.states, prompt.states)  # sampled from noise


def test_generate_prompt_keeps_the_candidate_with_lowest_action_loss(setup):
  plm, model, params, stacked, _ = setup
  few_shot = first_task(stacked)
  config = tiny_config(num_candidates=4, selection_batch=8)
  key = jax.random.key(3)
  prompt = pd.generate_prompt(model, plm, params, few_shot, key, config)
  # Rebuild the candidates and their scores independently, with the same keys.
  _, y = model.encode(pd.condition_window(plm, few_shot, "last"))
  k_gen, k_seg = jax.random.split(key)
  y = jnp.broadcast_to(y, (4,) + y.shape[1:])
  candidates = model.decode(model.sample(params, y, k_gen, config), y,
                            plm.state_mean.shape[0])
  segments = plm.sample_segments(k_seg, few_shot, 8)
  losses = []
  for g in range(4):
    cand = jax.tree.map(lambda x, g=g: x[g:g + 1], candidates)
    pred = np.asarray(plm.apply(plm.params, segments, cand))
    err = ((pred - np.asarray(segments.actions)) ** 2).mean(-1)
    mask = np.asarray(segments.mask)
    losses.append((err * mask).sum() / mask.sum())
  best = int(np.argmin(losses))
  assert len(set(np.round(losses, 8))) > 1  # the candidates differ
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b[best], rtol=1e-6),
               prompt, candidates)
