"""Fusion of aligned features and downstream task heads (classification, per-word tagging).

Library use mirrors `crossalign task ...`:

    from crossalign.fuse import TaskConfig, load_task_run, predict
    from crossalign.recipes.task import train_task
    run, result, ev = train_task(TaskConfig(task="report-consistency", data="data/scenes", init="runs/demo/run"))
    print(ev["report"])
"""

from crossalign.datasets.scenes.tasks import BUILTIN_TASKS, make_task_rows, write_task_manifest
from crossalign.fuse.config import TaskConfig, load_task_config
from crossalign.fuse.metrics import classification_metrics, entity_metrics, task_metrics
from crossalign.fuse.modules import FUSIONS, FusionOutput, Stream, build_fusion

__all__ = [
    "BUILTIN_TASKS",
    "FUSIONS",
    "FusionOutput",
    "Stream",
    "TaskConfig",
    "build_fusion",
    "classification_metrics",
    "entity_metrics",
    "evaluate_run",
    "load_task_config",
    "load_task_run",
    "make_task_rows",
    "predict",
    "task_metrics",
    "write_task_manifest",
]


def __getattr__(name: str):  # heavier parts (torch models) load on first use; training is crossalign.recipes.task
    if name in ("load_task_run", "evaluate_run", "predict"):
        from crossalign.fuse import run as _run

        return getattr(_run, name)
    raise AttributeError(name)
