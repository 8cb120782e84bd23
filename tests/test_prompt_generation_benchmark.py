"""``benchmarks/guided_step.py``, the parts of a guided step that
``prompt_generation.py`` times: the reverse-chain part is the chain that
L_DT's prompts come from."""

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import guided_step as pg
from experiments.configs import prompt_diffuser as prompt_diffuser_config
from pdiff import diffusion
from pdiff.tuning import prompt_diffuser as pd


def test_guided_step_parts_time_the_chain_of_l_dt():
  ds, da = 3, 2
  plm = pg.random_plm(jax.random.key(0), ds, da)
  train = pg.synthetic_trajectories(jax.random.key(1), 4, 30, ds, da)
  few_shot = pg.synthetic_trajectories(jax.random.key(2), 5, 30, ds, da)
  config = prompt_diffuser_config.get_config()
  config.hidden_sizes = (16,)
  config.num_diffusion_steps = 3
  config.ddim_steps = 2
  config.finetune_batch = 4
  config.guidance_batch = 2
  model, params = pd.make_prompt_diffuser(plm, train, config,
                                          jax.random.key(3))
  parts = pg.guided_step_parts(model, plm, few_shot, config)
  assert list(parts) == ["dm_loss_and_grad", "dt_loss", "dt_loss_and_grad",
                         "chain", "chain_and_grad", "plm_loss_and_grad"]
  parts = {"chain": jax.jit(parts["chain"])}
  c = config.copy_and_resolve_references()
  c.mode, c.guidance_path = "sum", "chain"
  few, _ = pd.split_few_shot(few_shot, c)
  key = jax.random.key(4)
  # The chain is L_DT's: its windows' condition and its key are the first
  # and second of L_DT's three keys.

  @jax.jit
  def reference(params, key):
    k_cond, k_gen, _ = jax.random.split(key, 3)
    windows = plm.sample_prompts(k_cond, few, c.guidance_batch,
                                 position=c.guidance_position)
    _, y = model.encode(windows)
    return jnp.sum(diffusion.ddpm_sample(
        model.denoise_fn(params), model.schedule, y, k_gen,
        y.shape[:-1] + model.x_mean.shape,
        clip_denoised=c.clip_denoised or None))

  np.testing.assert_allclose(parts["chain"](params, key),
                             reference(params, key), rtol=1e-6)
  # Another key gives another chain.
  assert parts["chain"](params, jax.random.key(5)) != reference(params, key)
