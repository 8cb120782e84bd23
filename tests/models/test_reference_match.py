"""pdiff's Prompt-DT computes what the public PyTorch Prompt-DT computes.

The reference (github.com/mxu34/prompt-dt) is imported from a checkout named
by the environment variable PDIFF_PROMPT_DT_REFERENCE, with torch and
transformers installed (`pip install -e ".[reference]"`); without them the
test is skipped. Its weights are copied into pdiff's parameters and both
forward passes (dropout off) run on the same batch.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import prompt_dt_reference
from pdiff.models import PromptDT
from pdiff.types import Segments

REFERENCE = os.environ.get("PDIFF_PROMPT_DT_REFERENCE")
STATE_DIM, ACT_DIM, HIDDEN, LAYERS = 3, 2, 16, 2
STEPS, PROMPT_STEPS, BATCH, MAX_EP_LEN = 4, 3, 5, 50

pytestmark = pytest.mark.skipif(
    prompt_dt_reference.reference_problem(REFERENCE) is not None,
    reason=f"PyTorch Prompt-DT not available: "
    f"{prompt_dt_reference.reference_problem(REFERENCE)}")


def reference_params(model, heads):
  """The reference's weights as pdiff's `PromptDT` parameters."""
  w = {k: v.detach().numpy() for k, v in model.state_dict().items()}

  def dense(name):
    return {"kernel": w[name + ".weight"].T, "bias": w[name + ".bias"]}

  def norm(name):
    return {"scale": w[name + ".weight"], "bias": w[name + ".bias"]}

  params = {
      "embed_ln": norm("embed_ln"), "final_ln": norm("transformer.ln_f"),
      "predict_action": dense("predict_action.0"),
  }
  for prefix in ("", "prompt_"):
    for part in ("return", "state", "action"):
      params[f"{prefix}embed_{part}"] = dense(f"{prefix}embed_{part}")
    params[f"{prefix}embed_timestep"] = {
        "embedding": w[f"{prefix}embed_timestep.weight"]}
  head_dim = HIDDEN // heads
  for i in range(LAYERS):
    block = f"transformer.h.{i}."
    qkv = w[block + "attn.c_attn.weight"]  # Conv1D: [in, 3 H]
    qkv_bias = w[block + "attn.c_attn.bias"]
    attention = {}
    for j, name in enumerate(("query", "key", "value")):
      cols = slice(j * HIDDEN, (j + 1) * HIDDEN)
      attention[name] = {
          "kernel": qkv[:, cols].reshape(HIDDEN, heads, head_dim),
          "bias": qkv_bias[cols].reshape(heads, head_dim)}
    attention["out"] = {
        "kernel": w[block + "attn.c_proj.weight"].reshape(
            heads, head_dim, HIDDEN),
        "bias": w[block + "attn.c_proj.bias"]}
    params[f"blocks_{i}"] = {
        "ln_attention": norm(block + "ln_1"), "ln_mlp": norm(block + "ln_2"),
        "attention": attention,
        "mlp": {"fc": {"kernel": w[block + "mlp.c_fc.weight"],
                       "bias": w[block + "mlp.c_fc.bias"]},
                "proj": {"kernel": w[block + "mlp.c_proj.weight"],
                         "bias": w[block + "mlp.c_proj.bias"]}},
    }
  return jax.tree.map(jnp.asarray, params)


def random_steps(rng, steps, num_padded):
  mask = np.broadcast_to(np.arange(steps) >= num_padded, (BATCH, steps))
  return dict(
      states=rng.normal(size=(BATCH, steps, STATE_DIM)).astype(np.float32),
      actions=rng.uniform(-1, 1, (BATCH, steps, ACT_DIM)).astype(np.float32),
      returns_to_go=rng.normal(size=(BATCH, steps)).astype(np.float32),
      timesteps=rng.integers(0, MAX_EP_LEN, (BATCH, steps)),
      mask=mask.astype(np.float32))


@pytest.mark.parametrize("heads,num_padded", [(1, 0), (2, 0), (1, 1)])
def test_forward_matches_the_pytorch_reference(heads, num_padded):
  import torch

  model_cls, _, _ = prompt_dt_reference.import_reference(REFERENCE,
                                                         trainer=False)
  torch.manual_seed(0)
  reference = prompt_dt_reference.build_model(
      model_cls, state_dim=STATE_DIM, act_dim=ACT_DIM, hidden=HIDDEN,
      layers=LAYERS, heads=heads, context_len=STEPS, max_ep_len=MAX_EP_LEN)
  reference.eval()
  rng = np.random.default_rng(heads + 10 * num_padded)
  seg = random_steps(rng, STEPS, num_padded)
  prm = random_steps(rng, PROMPT_STEPS, 0)

  def torch_steps(d):
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in d.items()}
    return (t["states"], t["actions"], torch.zeros(BATCH, t["mask"].shape[1]),
            t["returns_to_go"][..., None], t["timesteps"].long(),
            t["mask"].long())

  s, a, r, rtg, ts, mask = torch_steps(seg)
  ps, pa, pr, prtg, pts, pmask = torch_steps(prm)
  with torch.no_grad():
    _, expected, _ = reference(
        s, a, r, rtg, ts, attention_mask=mask,
        prompt=(ps, pa, pr, None, prtg, pts, pmask))

  def segments(d):
    return Segments(states=jnp.asarray(d["states"]),
                    actions=jnp.asarray(d["actions"]),
                    rewards=jnp.zeros(d["mask"].shape),
                    returns_to_go=jnp.asarray(d["returns_to_go"]),
                    timesteps=jnp.asarray(d["timesteps"], jnp.int32),
                    mask=jnp.asarray(d["mask"]))

  model = PromptDT(state_dim=STATE_DIM, act_dim=ACT_DIM, hidden_dim=HIDDEN,
                   num_layers=LAYERS, num_heads=heads, mlp_dim=4 * HIDDEN,
                   max_ep_len=MAX_EP_LEN)
  got = model.apply({"params": reference_params(reference, heads)},
                    segments(seg), segments(prm))
  real = seg["mask"] > 0  # padded steps' outputs are not defined alike
  np.testing.assert_allclose(np.asarray(got)[real],
                             expected.numpy()[real], rtol=1e-5, atol=1e-5)
