"""Offline data: storage format, loading, importers, samplers, normalisation."""

from pdiff.data.importers import (
    import_minari,
    import_prompt_dt_dir,
    import_prompt_dt_file,
    pad_episodes,
    parse_prompt_dt_name,
    read_minari_episodes,
    read_prompt_dt_pickle,
)
from pdiff.data.loading import (
    load_family_datasets,
    load_task_trajectories,
    pooled,
)
from pdiff.data.normalization import (
    denormalize_states,
    normalize_states,
    state_statistics,
    valid_step_mask,
)
from pdiff.data.prompts import (
    PROMPT_POSITIONS,
    last_segment_prompt,
    prompt_from_trajectories,
    prompt_starts,
    sample_prompt,
)
from pdiff.data.samplers import (
    few_shot_split,
    sample_multitask_segments,
    sample_segments,
    stack_tasks,
)
from pdiff.data.storage import (
    FORMAT_VERSION,
    QUALITIES,
    DatasetError,
    DatasetMetadata,
    TaskDataset,
    dataset_path,
    load_task_dataset,
    make_task_dataset,
    save_task_dataset,
)
from pdiff.data.windows import (
    ACTION_PAD,
    choose_trajectories,
    returns_to_go,
    trajectory_windows,
)
from pdiff.types import Segments, Trajectories

__all__ = [
    "ACTION_PAD",
    "FORMAT_VERSION",
    "PROMPT_POSITIONS",
    "QUALITIES",
    "DatasetError",
    "DatasetMetadata",
    "Segments",
    "TaskDataset",
    "Trajectories",
    "choose_trajectories",
    "dataset_path",
    "denormalize_states",
    "few_shot_split",
    "import_minari",
    "import_prompt_dt_dir",
    "import_prompt_dt_file",
    "last_segment_prompt",
    "load_family_datasets",
    "load_task_dataset",
    "load_task_trajectories",
    "make_task_dataset",
    "normalize_states",
    "pad_episodes",
    "parse_prompt_dt_name",
    "pooled",
    "prompt_from_trajectories",
    "prompt_starts",
    "read_minari_episodes",
    "read_prompt_dt_pickle",
    "returns_to_go",
    "sample_multitask_segments",
    "sample_prompt",
    "sample_segments",
    "save_task_dataset",
    "stack_tasks",
    "state_statistics",
    "trajectory_windows",
    "valid_step_mask",
]
