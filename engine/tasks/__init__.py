"""Tasks: the data model, loading and validating task folders, splits, metrics and importers.

Standard library only (the TUI imports this package; it must stay light).
"""

from engine.errors import MetricError
from engine.tasks.importers import import_induce_execute, import_task, read_task_file
from engine.tasks.loader import list_tasks, load_folder, load_task, task_names
from engine.tasks.metrics import METRICS, TASK_METRICS, normalize, score
from engine.tasks.model import DEFAULT_TEMPLATE, Example, Judge, Prompt, Task
from engine.tasks.splits import Splits, make_splits

__all__ = [
    "DEFAULT_TEMPLATE",
    "METRICS",
    "TASK_METRICS",
    "Example",
    "Judge",
    "MetricError",
    "Prompt",
    "Splits",
    "Task",
    "import_induce_execute",
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
