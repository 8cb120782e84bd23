"""The expensive, fixed-path stages: datasets and the pre-trained Prompt-DT.

Both live at paths other launchers read (``{workdir}/datasets``,
``{workdir}/pretrain``), so they are not keyed by fingerprint: a stage record
(:mod:`pdiff.stages`) beside them says what they were computed from, and a
run whose config differs stops before writing anything, naming every changed
field. Both stages resume after a kill: dataset files are written atomically
one task at a time, pre-training resumes from its latest orbax checkpoint,
and the shipped PLM is copied to a temporary directory renamed into place.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tempfile

import ml_collections
from absl import logging

from pdiff import stages
from pdiff.data import behavior, collect, storage
from pdiff.pipeline.validate import PRETRAINED_ASSETS
from pdiff.training import checkpointing
from pdiff.training import pretrain as pretrain_lib

DATASETS_VERSION = 1
PRETRAIN_VERSION = 2
# Pre-training fields that do not change the parameters it produces.
_PRETRAIN_NEUTRAL = ("log_every", "ckpt_every", "eval_episodes")


def _policy_digest(family, quality: str, policy_root: str | None) -> str:
  scripted = getattr(family, "scripted_behavior", None)
  if scripted is not None and not policy_root:
    # A scripted policy is identified by its description, which names the
    # package and version that implement it.
    return hashlib.sha256(scripted()[1].encode()).hexdigest()
  directory = (os.path.join(policy_root, quality) if policy_root
               else behavior.shipped_policy_dir(family.behavior_family,
                                                quality))
  return stages.file_digest([os.path.join(directory, "params.msgpack"),
                             os.path.join(directory, "policy.json")])


def dataset_record(config, family, quality: str, *,
                   status: str = "complete") -> dict:
  """The stage record of one quality's datasets under ``config.collect``."""
  c = config.collect
  noise = {"expert": c.expert_noise, "medium": c.medium_noise}.get(quality, 0.)
  subtree = dict(family=family.name, backend=family.backend, quality=quality,
                 num_trajectories=c.num_trajectories, action_noise=noise,
                 seed=c.seed)
  inputs = {}
  if quality != "random":
    inputs["behaviour_policy"] = _policy_digest(family, quality, c.policy_dir)
  return stages.make_record("datasets", DATASETS_VERSION, subtree, inputs,
                            status=status)


def ensure_datasets(config, family, workdir: str, qualities,
                    progress=logging.info) -> dict[str, str]:
  """Collects each quality's datasets (resuming a stopped collection).

  Returns:
    ``{quality: digest}``, the SHA-256 over that quality's files: the
    identity later stages fingerprint.

  Raises:
    StaleStageError: the directory holds datasets of another config.
  """
  root = os.path.join(workdir, "datasets")
  digests = {}
  for quality in qualities:
    directory = os.path.join(root, family.name, quality)
    record_path = os.path.join(directory, stages.RECORD_FILE)
    expected = dataset_record(config, family, quality, status="started")
    record = stages.read_record(record_path)
    files = sorted(glob.glob(os.path.join(directory, "task_*.npz")))
    remedy = (f"Delete {directory} to collect it again, or use another "
              "--workdir.")
    if record is None and files:
      raise stages.StaleStageError(
          f"{directory} holds dataset files without a stage record "
          f"({record_path}), so what they were collected with is unknown. "
          + remedy)
    stages.check_fixed_stage(record, expected, directory, remedy)
    paths = [str(storage.dataset_path(root, family.name, quality, i))
             for i in family.split_tasks]
    if stages.is_complete(record, expected["fingerprint"]):
      digest = stages.file_digest(paths)
      if digest != record.get("digest"):
        raise stages.StaleStageError(
            f"{directory}: the dataset files changed after collection "
            f"(digest {digest[:12]} != recorded {record.get('digest', '')[:12]}"
            f"). {remedy}")
      digests[quality] = digest
      continue
    stages.write_json_atomic(record_path, expected)
    c = config.collect
    collect.collect_family_datasets(
        family, quality, root, num_trajectories=c.num_trajectories,
        seed=c.seed, action_noise=expected["config"]["action_noise"],
        policy_dir=(os.path.join(c.policy_dir, quality) if c.policy_dir
                    else None),
        tasks_per_chunk=c.tasks_per_chunk, progress=progress,
        task_indices=family.split_tasks)
    digest = stages.file_digest(paths)
    stages.write_json_atomic(record_path,
                             dict(expected, status="complete", digest=digest))
    digests[quality] = digest
  # The summary covers every complete quality of the directory, not only
  # those asked for now.
  complete = [q for q in collect.QUALITIES
               if q in digests or _complete_elsewhere(config, family, root, q)]
  summary_path = os.path.join(root, family.name, "returns.json")
  summary = collect.dataset_return_summary(root, family, complete)
  stages.write_json_atomic(summary_path, summary)
  return digests


# The files of a shipped PLM that define what it computes; the others
# (evaluation, training curve, pre-training config) document it and do not
# enter its fingerprint.
SHIPPED_MODEL_FILES = ("config.json", "params.msgpack", "policy.json")


def _complete_elsewhere(config, family, root: str, quality: str) -> bool:
  """Whether a quality not asked for now was collected, completely, with
  ``config.collect`` (its behaviour policy may be absent: then no)."""
  record = stages.read_record(
      os.path.join(root, family.name, quality, stages.RECORD_FILE))
  if record is None or record.get("status") != "complete":
    return False
  try:
    fp = dataset_record(config, family, quality)["fingerprint"]
  except OSError:
    return False
  return record.get("fingerprint") == fp


def shipped_checkpoint_fits(src: str, config, family) -> str | None:
  """Why the shipped checkpoint at ``src`` does not fit ``config`` (None if it
  does): model fields, K, K*, family, backend and quality must all agree."""
  saved = checkpointing.read_config(src).model.to_dict()
  info = pretrain_lib.read_policy_info(src)
  wanted = config.pretrain.train.model.to_dict()
  for field, value in wanted.items():
    if field in ("state_dim", "act_dim") and not value:
      continue  # 0 = taken from the data
    if saved.get(field) != value:
      return f"model.{field} is {saved.get(field)!r}, the config wants {value!r}"
  p = config.pretrain
  for field, value in (("context_len", p.context_len),
                       ("prompt_len", p.prompt_len),
                       ("prompt_episodes", p.prompt_episodes),
                       ("quality", p.quality), ("family", family.name),
                       ("backend", family.backend)):
    if info.get(field) != value:
      return f"{field} is {info.get(field)!r}, the config wants {value!r}"
  return None


def shipped_record(shipped: str, *, root: str | None = None,
                   status: str = "complete") -> dict:
  """The PLM stage record of the shipped checkpoint ``{root}/{shipped}``
  (``root`` defaults to :data:`PRETRAINED_ASSETS`): its fingerprint covers
  the model files (:data:`SHIPPED_MODEL_FILES`), so a result computed from an
  earlier version of the checkpoint names another fingerprint."""
  src = os.path.join(PRETRAINED_ASSETS if root is None else root, shipped)
  files = [os.path.join(src, name) for name in SHIPPED_MODEL_FILES]
  return stages.make_record("pretrained_plm", PRETRAIN_VERSION,
                            dict(shipped=shipped),
                            dict(files=stages.file_digest(files)),
                            status=status)


def pretrain_record(config, family, dataset_digest: str, shipped: str, *,
                    status: str = "complete") -> dict:
  """The PLM's stage record: the shipped checkpoint's files, or the
  pre-training config and its dataset."""
  if shipped:
    return shipped_record(shipped, status=status)
  subtree = {k: v for k, v in config.pretrain.to_dict().items()
             if k not in _PRETRAIN_NEUTRAL}
  subtree.update(family=family.name, backend=family.backend)
  return stages.make_record("pretrain", PRETRAIN_VERSION, subtree,
                            {f"datasets/{config.pretrain.quality}":
                             dataset_digest}, status=status)


def ensure_pretrained(config, family, workdir: str, dataset_digest: str):
  """The PLM: the shipped checkpoint ``config.pretrained`` when it fits the
  config (copied into ``{workdir}/pretrain``), else pre-trained there
  (resuming from the latest checkpoint).

  Returns:
    ``(plm, fingerprint)``.

  Raises:
    StaleStageError: ``{workdir}/pretrain`` holds another config's PLM.
  """
  out = os.path.join(workdir, "pretrain")
  shipped = config.pretrained
  if shipped:
    src = os.path.join(PRETRAINED_ASSETS, shipped)
    mismatch = shipped_checkpoint_fits(src, config, family)
    if mismatch:
      logging.warning("shipped PLM %s does not fit the config (%s): "
                      "pre-training instead", src, mismatch)
      shipped = ""
  expected = pretrain_record(config, family, dataset_digest, shipped,
                             status="started")
  record_path = os.path.join(out, stages.RECORD_FILE)
  record = stages.read_record(record_path)
  remedy = (f"Delete {out} to pre-train (or copy) the PLM again, or use "
            "another --workdir.")
  if record is None and os.path.exists(out):
    raise stages.StaleStageError(
        f"{out} exists without a stage record ({record_path}), so what it "
        "was trained with is unknown. " + remedy)
  stages.check_fixed_stage(record, expected, out, remedy)
  fp = expected["fingerprint"]
  for leftover in glob.glob(out + ".tmp-*"):  # an interrupted copy
    shutil.rmtree(leftover, ignore_errors=True)
  if shipped:
    if record is None:
      tmp = tempfile.mkdtemp(prefix=os.path.basename(out) + ".tmp-",
                             dir=os.path.dirname(os.path.abspath(out)))
      shutil.copytree(src, tmp, dirs_exist_ok=True)
      stages.write_json_atomic(os.path.join(tmp, stages.RECORD_FILE),
                               dict(expected, status="complete"))
      os.rename(tmp, out)
      logging.info("using the shipped pre-trained PLM %s", src)
    return pretrain_lib.load_pretrained_policy(out), fp
  if stages.is_complete(record, fp):
    return pretrain_lib.load_pretrained_policy(out), fp
  if record is None:
    os.makedirs(out, exist_ok=True)
    stages.write_json_atomic(record_path, expected)
  plm = pretrain_lib.pretrain(
      ml_collections.ConfigDict(config.pretrain.to_dict()), family,
      os.path.join(workdir, "datasets"), out)
  stages.write_json_atomic(record_path, dict(expected, status="complete"))
  return plm, fp
