"""Tasks: the data model, loading and validating task folders, splits, metrics and importers.

Standard library only (the TUI imports this package; it must stay light).
"""

from engine.tasks.importers import import_task, read_task_file
from engine.tasks.loader import list_tasks, load_folder, load_task, task_names
from engine.tasks.metrics import METRICS, normalize, score
from engine.tasks.model import DEFAULT_TEMPLATE, Example, Task
from engine.tasks.splits import Splits, make_splits

__all__ = [
    "DEFAULT_TEMPLATE",
    "METRICS",
    "Example",
    "Splits",
    "Task",
    "import_task",
    "list_tasks",
    "load_folder",
    "load_task",
    "make_splits",
    "normalize",
    "read_task_file",
    "score",
    "task_names",
]
