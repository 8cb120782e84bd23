"""Configs of the prompt-tuning methods (``pdiff.tuning.registry``).

``get_config(name)`` is the default config of one registered method;
``experiments/configs/run.py`` holds one per method under ``tuning``. Every
budget (steps, batch, online episodes) is a field here, stated in the docs
and in the results table.
"""

import ml_collections

from experiments.configs import prompt_diffuser


def prompt_dt() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Nothing to configure: the last K* steps of a random few-shot trajectory.
  c.name = "prompt_dt"
  return c


def prompt_diffuser_config() -> ml_collections.ConfigDict:
  c = prompt_diffuser.get_config()
  # Gradient combinations, one row of the table each (the ablation).
  c.modes = ("dm_only", "sum", "projection")
  # Named settings beyond the paper's, one row each after the modes' rows
  # (pdiff.tuning.prompt_diffuser_method.NAMED_SETTINGS), e.g.
  # "evaluation_returns_scale_10", chosen on cheetah-vel's validation tasks.
  c.named_settings = ()
  return c


def prompt_tuning_dt() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Prompt-Tuning DT (Hu et al., 2023): ZO-RankSGD on the prompt's (s, a, r).
  c.name = "prompt_tuning_dt"
  # Search iterations (one ZO-RankSGD step each).
  c.iterations = 100
  # Gaussian candidates ranked per iteration (m >= 2).
  c.num_candidates = 8
  # mu: candidates are x + mu * u, u ~ N(0, I); 0 returns the initial prompt.
  c.noise_scale = 0.05
  # Step size of x <- x - learning_rate * g.
  c.learning_rate = 0.01
  # Few-shot segments scoring the candidates (shared within an iteration).
  c.segment_batch = 64
  # Prompt actions stay in [-action_clip, action_clip].
  c.action_clip = 1.0
  # Draw a new segment batch each iteration (False: one for the search).
  c.resample_segments = True
  return c


def prompt_bandit() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # UCB1 over real few-shot windows, on online episodes (Rietz et al., 2025).
  c.name = "prompt_bandit"
  # Budget of online episodes per test task (never exceeded).
  c.online_episodes = 40
  # Episodes of one arm per task and round (one batched rollout per round).
  c.episodes_per_round = 2
  # Arms per few-shot trajectory: its last K* steps (Prompt-DT's window) and
  # windows ending arm_stride, 2 * arm_stride, ... steps earlier (> 1 only
  # for a PLM pre-trained on prompt_position="random" windows).
  c.windows_per_trajectory = 1
  # Steps between a trajectory's windows; None = K* (adjacent windows).
  c.arm_stride = ml_collections.config_dict.placeholder(int)
  # c of UCB1's bonus c * sqrt(2 ln t / n_a) (returns / return_scale).
  c.exploration = 1.0
  return c


def oracle_prompt() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Diagnostic: the dataset window of best rollout return (not a method).
  c.name = "oracle_prompt"
  # Trajectories of the task's full dataset whose last window is a candidate.
  c.max_candidates = 20
  # Online episodes per candidate (one batched rollout per candidate).
  c.episodes_per_candidate = 5
  return c


def _gradient_tuning(name: str) -> ml_collections.ConfigDict:
  """Fields of pdiff.tuning.finetune.make_trainer, shared by the gradient
  methods: Prompt-DT's fine-tuning optimiser and batch."""
  c = ml_collections.ConfigDict()
  c.name = name
  # Gradient steps per test task (one batch each).
  c.steps = 10
  # Training windows per step, drawn from the task's data.
  c.batch_size = 256
  # AdamW learning rate (constant, no warm-up).
  c.learning_rate = 1e-4
  # AdamW decoupled weight decay (of the trained parameters only).
  c.weight_decay = 1e-4
  # Gradients are clipped to this global norm first (Prompt-DT: 0.25).
  c.grad_clip_norm = 0.25
  # Train with the PLM's dropout (Prompt-DT's model.train()); False: no
  # dropout while tuning. Rollouts are always deterministic.
  c.dropout = True
  return c


def prompt_dt_ft() -> ml_collections.ConfigDict:
  # Prompt-DT-FT (the public Prompt-DT's --finetune): every PLM weight
  # fine-tuned per task on its few-shot data, with its defaults (10 steps,
  # batch 256, AdamW lr 1e-4, weight decay 1e-4, clip 0.25, dropout on).
  c = _gradient_tuning("prompt_dt_ft")
  # Training windows: "uniform" (K steps at uniform starts, as in
  # pre-training) or "last" (the last K* steps of each drawn trajectory, as
  # the public Prompt-DT's fine-tuning batches).
  c.segment_position = "uniform"
  # Prompt every window with the task's rolled-out few-shot prompt (as
  # Prompt-DT); False: each window gets its own K*-step few-shot prompt at
  # the PLM's prompt position.
  c.fixed_prompt = True
  return c


def upper_bound() -> ml_collections.ConfigDict:
  # Full-data upper bound: Prompt-DT-FT on the test task's whole dataset.
  c = prompt_dt_ft()
  c.name = "upper_bound"
  # More steps: the whole dataset has many more windows than the few shots.
  c.steps = 500
  return c


def soft_prompt() -> ml_collections.ConfigDict:
  # Soft prompt: an offset [3K*, H] of the few-shot prompt's embedded
  # tokens, trained by gradient with the PLM frozen.
  c = _gradient_tuning("soft_prompt")
  # More steps and a larger rate than FT: far fewer trained parameters.
  c.steps = 100
  c.learning_rate = 1e-3
  return c


def adaptor() -> ml_collections.ConfigDict:
  # Bottleneck adapters (zero-initialised up-projection) after the attention
  # and the MLP of every block, trained with the PLM frozen.
  c = _gradient_tuning("adaptor")
  # Adapter bottleneck width d (H = 128 in Prompt-DT's default model).
  c.adapter_dim = 32
  # More steps and a larger rate than FT: far fewer trained parameters.
  c.steps = 100
  c.learning_rate = 1e-3
  return c


# name -> default config; a new method adds one entry.
DEFAULTS = {
    "prompt_dt": prompt_dt,
    "prompt_diffuser": prompt_diffuser_config,
    "prompt_tuning_dt": prompt_tuning_dt,
    "prompt_bandit": prompt_bandit,
    "oracle_prompt": oracle_prompt,
    "prompt_dt_ft": prompt_dt_ft,
    "soft_prompt": soft_prompt,
    "adaptor": adaptor,
    "upper_bound": upper_bound,
}


# Methods of the default run, in table order: the plain few-shot prompt and
# Prompt Diffuser's three gradient combinations, so that the README's main
# job fits its time budget on 2 CPU cores. The gradient baselines train 10 to
# 500 steps on batches of 256 windows per task and seed (minutes per seed on
# a CPU); every non-diagnostic method, in the paper's order:
ALL_METHODS = ("prompt_dt", "prompt_dt_ft", "soft_prompt", "adaptor",
               "prompt_tuning_dt", "prompt_diffuser", "prompt_bandit",
               "upper_bound")
DEFAULT_METHODS = ("prompt_dt", "prompt_diffuser")

# Smaller budgets of the ``tiny`` preset (tests, smoke runs), applied to
# every method config that has the field.
TINY = dict(
    # prompt_diffuser
    pretrain_steps=4, finetune_steps=2, pretrain_batch=8, finetune_batch=4,
    guidance_batch=2, hidden_sizes=(16, 16), num_diffusion_steps=4,
    ddim_steps=2, selection_batch=4,
    # gradient methods (prompt_dt_ft, soft_prompt, adaptor, upper_bound)
    steps=2, batch_size=4, adapter_dim=4,
    # prompt_tuning_dt
    iterations=2, segment_batch=4,
    # prompt_bandit, oracle_prompt
    online_episodes=4, episodes_per_round=2, max_candidates=2,
    episodes_per_candidate=1,
)


def get_config(name: str = "prompt_dt",
               preset: str = "default") -> ml_collections.ConfigDict:
  """The default config of method ``name``; ``preset="tiny"`` shrinks its
  budgets (:data:`TINY`)."""
  if name not in DEFAULTS:
    raise ValueError(f"tuning config: unknown method {name!r}; expected one "
                     f"of {sorted(DEFAULTS)}.")
  if preset not in ("default", "tiny"):
    raise ValueError(f"tuning config: preset must be 'default' or 'tiny', got "
                     f"{preset!r}.")
  c = DEFAULTS[name]()
  if preset == "tiny":
    for field, value in TINY.items():
      if field in c:
        c[field] = value
  return c


def all_configs(preset: str = "default") -> ml_collections.ConfigDict:
  """Every method's config, by name."""
  return ml_collections.ConfigDict({k: get_config(k, preset)
                                    for k in DEFAULTS})
