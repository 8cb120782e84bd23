"""The public PyTorch Prompt-DT (github.com/mxu34/prompt-dt), imported from a
checkout given by its path, for the train-step benchmark and for the test
that pdiff's forward pass matches it (tests/models/test_reference_match.py).

Nothing of the reference is copied here: its modules are imported from the
checkout as they are. It needs torch and transformers
(`pip install -e ".[reference]"`).
"""

from __future__ import annotations

import os
import sys
import types


def reference_problem(path: str | None) -> str | None:
  """Why the reference at `path` cannot be imported, or None."""
  if not path:
    return "no path given (a checkout of github.com/mxu34/prompt-dt)"
  module = os.path.join(path, "prompt_dt", "prompt_decision_transformer.py")
  if not os.path.exists(module):
    return f"{module} not found: the path must be a Prompt-DT checkout"
  for package in ("torch", "transformers"):
    try:
      __import__(package)
    except ImportError:
      return f"{package} is not installed (pip install -e \".[reference]\")"
  return None


def import_reference(path: str, *, trainer: bool = True):
  """`(PromptDecisionTransformer, PromptSequenceTrainer or None, notes)`
  from the checkout at `path`.

  Adaptations to libraries newer than its pinned ones (torch 1.10,
  transformers 4.5.1), none touching its computation, listed in `notes`:
  its GPT-2 file decorates `forward` with
  `add_code_sample_docstrings(tokenizer_class=...)`, a docstring helper whose
  keyword transformers later renamed `processor_class`; and the modules its
  trainer imports only for evaluation (`wandb`, and `prompt_dt.prompt_utils`,
  which needs gym, MuJoCo and Meta-World) are stood in for by empty modules
  when they cannot be imported.
  """
  notes = []
  path = os.path.abspath(path)
  if path not in sys.path:
    sys.path.insert(0, path)
  import transformers.file_utils as file_utils

  helper = file_utils.add_code_sample_docstrings
  if not getattr(helper, "_accepts_tokenizer_class", False):

    def add_code_sample_docstrings(*args, tokenizer_class=None, **kwargs):
      if tokenizer_class is not None:
        kwargs.setdefault("processor_class", tokenizer_class)
      return helper(*args, **kwargs)

    add_code_sample_docstrings._accepts_tokenizer_class = True
    file_utils.add_code_sample_docstrings = add_code_sample_docstrings
  notes.append("transformers.file_utils.add_code_sample_docstrings accepts "
               "the old keyword tokenizer_class")
  from prompt_dt.prompt_decision_transformer import PromptDecisionTransformer

  if not trainer:
    return PromptDecisionTransformer, None, notes
  for module in ("wandb", "prompt_dt.prompt_utils"):
    if isinstance(sys.modules.get(module), types.ModuleType):
      continue
    try:
      __import__(module)
    except Exception:  # noqa: BLE001 (whatever fails: stand in)
      stub = types.ModuleType(module)
      stub.env = None  # `from wandb import env`
      stub.flatten_prompt = None  # used by its evaluation only
      sys.modules[module] = stub
      notes.append(f"{module} stood in by an empty module (its trainer "
                   "imports it for evaluation only)")
  from prompt_dt.prompt_seq_trainer import PromptSequenceTrainer

  return PromptDecisionTransformer, PromptSequenceTrainer, notes


def build_model(model_cls, *, state_dim: int, act_dim: int, hidden: int,
                layers: int, heads: int, context_len: int,
                dropout: float = 0.1, max_ep_len: int = 1000):
  """The reference model configured as its `pdt_main.py` configures it.

  `n_ctx=1024` is GPT2Config's old default, which the reference's GPT-2
  file reads and newer transformers configs lack.
  """
  return model_cls(
      state_dim=state_dim, act_dim=act_dim, max_length=context_len,
      max_ep_len=max_ep_len, hidden_size=hidden, n_layer=layers,
      n_head=heads, n_inner=4 * hidden, activation_function="relu",
      n_positions=1024, n_ctx=1024, resid_pdrop=dropout, attn_pdrop=dropout)
