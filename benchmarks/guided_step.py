"""The shapes ``prompt_generation.py`` measures: synthetic few-shot data, a
randomly initialised PLM of the ``cpu`` preset's shape, and the parts of a
guided fine-tuning step. No flags here, so that tests can import it beside
other benchmarks."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from experiments.configs import pretrain as pretrain_config
from pdiff import diffusion
from pdiff.models.policy import PretrainedPolicy, masked_action_mse
from pdiff.models.prompt_dt import make_prompt_dt
from pdiff.tuning import prompt_diffuser as pd
from pdiff.types import Segments, Trajectories

# Return scale of cheetah-vel (DESIGN.md, section 2).
RETURN_SCALE = 500.0


def synthetic_trajectories(key: jax.Array, num: int, steps: int, ds: int,
                           da: int) -> Trajectories:
  """Random full-length trajectories ``[num, steps, ...]`` of one task."""
  k_obs, k_act, k_rew = jax.random.split(key, 3)
  return Trajectories(
      observations=jax.random.normal(k_obs, (num, steps, ds)),
      actions=jax.random.uniform(k_act, (num, steps, da), minval=-1,
                                 maxval=1),
      rewards=-1.0 + 0.3 * jax.random.normal(k_rew, (num, steps)),
      dones=jnp.zeros((num, steps), bool),
      timeouts=jnp.zeros((num, steps), bool).at[:, -1].set(True),
      lengths=jnp.full((num,), steps, jnp.int32))


def random_plm(key: jax.Array, ds: int, da: int,
               preset: str = "cpu") -> PretrainedPolicy:
  """A randomly initialised Prompt-DT of the shape of a pre-training preset
  (``experiments/configs/pretrain.py``), the ``cpu`` one by default."""
  config = pretrain_config.get_config(f"cheetah_vel,{preset}")
  model = make_prompt_dt(config.train.model, state_dim=ds, act_dim=da)
  k, kp = config.context_len, config.prompt_len

  def zeros(steps):
    return Segments(
        states=jnp.zeros((1, steps, ds)), actions=jnp.zeros((1, steps, da)),
        rewards=jnp.zeros((1, steps)), returns_to_go=jnp.zeros((1, steps)),
        timesteps=jnp.zeros((1, steps), jnp.int32),
        mask=jnp.ones((1, steps)))

  params = jax.jit(model.init)(key, zeros(k), zeros(kp))["params"]
  return PretrainedPolicy(
      model=model, params=params, state_mean=jnp.zeros((ds,)),
      state_std=jnp.ones((ds,)), return_scale=RETURN_SCALE,
      max_ep_len=config.train.model.max_ep_len, context_len=k,
      prompt_len=kp)


def guided_step_parts(model: pd.PromptDiffuser, plm: PretrainedPolicy,
                      few_shot: Trajectories, config
                      ) -> dict[str, Callable[..., jax.Array]]:
  """The parts of a guided ``sum`` step through the chain, each a function
  ``part(params, key) -> scalar`` (a loss, or a loss plus its gradient's
  global norm, which keeps the gradient computed):

  ``dm_loss_and_grad``, ``dt_loss``, ``dt_loss_and_grad`` (the library's
  losses), ``chain`` and ``chain_and_grad`` (the reverse chain that L_DT's
  prompts come from, summed; its gradient in the denoiser's parameters) and
  ``plm_loss_and_grad`` (the PLM's action loss on L_DT's segments, with its
  gradient in a prompt: the real windows' encoding stands for a generated
  one).
  """
  c = config.copy_and_resolve_references()
  c.mode, c.guidance_path = "sum", "chain"
  few, _ = pd.split_few_shot(few_shot, c)
  ds = plm.state_mean.shape[0]
  clip = c.clip_denoised or None

  def guidance_inputs(key):
    """The windows' encoding and condition, the chain's key and segments,
    split from ``key`` as L_DT splits it."""
    k_cond, k_gen, k_seg = jax.random.split(key, 3)
    windows = plm.sample_prompts(k_cond, few, c.guidance_batch,
                                 position=c.guidance_position)
    x0, y = model.encode(windows)
    segments = pd.guidance_segments(plm, few, k_seg, c.guidance_batch, c,
                                    None)
    return x0, y, k_gen, segments

  def chain(p, key):
    _, y, k_gen, _ = guidance_inputs(key)
    shape = y.shape[:-1] + model.x_mean.shape
    return jnp.sum(diffusion.ddpm_sample(model.denoise_fn(p), model.schedule,
                                         y, k_gen, shape, clip_denoised=clip))

  def plm_loss(x, y, segments):
    prompt = model.decode(x, y, ds)
    return masked_action_mse(plm.apply(plm.params, segments, prompt),
                             segments.actions, segments.mask)

  def with_grad(loss_fn):
    def part(*args):
      loss, grads = jax.value_and_grad(loss_fn)(*args)
      return loss + optax.tree.norm(grads)
    return part

  def plm_part(p, key):
    del p
    x0, y, _, segments = guidance_inputs(key)
    return with_grad(plm_loss)(x0, y, segments)

  def dm_loss(p, key):
    return pd._dm_loss(model, plm, p, few, key, c.finetune_batch,  # noqa: SLF001
                       c.train_position)

  def dt_loss(p, key):
    return pd._dt_loss(model, plm, p, few, key, c)  # noqa: SLF001

  return {
      "dm_loss_and_grad": with_grad(dm_loss),
      "dt_loss": dt_loss,
      "dt_loss_and_grad": with_grad(dt_loss),
      "chain": chain,
      "chain_and_grad": with_grad(chain),
      "plm_loss_and_grad": plm_part,
  }
