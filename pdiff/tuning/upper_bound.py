"""``upper_bound``: the PLM fine-tuned on the test task's whole dataset.

The method (config check, trainer, ``tune``) is ``finetune.UPPER_BOUND``, the
Prompt-DT-FT trainer of :mod:`pdiff.tuning.finetune` given every trajectory
of the task (``data="full_dataset"``) and more steps; importing this module
registers it, after the few-shot methods, so that it is the table's last row.
"""

from __future__ import annotations

from pdiff.tuning import finetune, registry

METHOD = registry.register(finetune.UPPER_BOUND)
