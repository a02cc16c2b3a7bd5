"""Metrics a task folder brings itself: a Python function (``metric = "python"``) and a model as judge
(``metric = "judge"``).

Why here and shaped like this:

- The loader checks a ``python = "metric.py:score"`` spec without running anything (the file is parsed, never
  executed: listing tasks must not run user code); the function is loaded on first use while scoring, from source
  (no ``__pycache__`` is written into the task folder), and reloaded when the file changes, so fixing a broken
  metric and resuming the run needs no restart of the engine.
- Everything a user function does wrong (raising, returning a non-number or a number outside 0..1) becomes a
  :class:`~engine.errors.MetricError` whose problem holds the function's own traceback lines (not the
  engine's) and the example that broke it, so the run fails cleanly with a message that points into metric.py.
- The judge's prompt and the reading of its verdict are pure functions here; the calls themselves go through the
  black-box client (:func:`engine.blackbox.score_instruction`), so they are cached and counted like any other.
"""

from __future__ import annotations

import ast
import re
import sys
import threading
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha1, sha256
from pathlib import Path
from typing import Any, Protocol

from engine.errors import MetricError, TaskError
from engine.tasks.metrics import check_score


class Example(Protocol):
    """What is read of an example here (engine.tasks.model.Example has it; not imported, so that the model, which
    scores through this module, and this module do not import each other)."""

    input: str
    answers: tuple[str, ...]


class Task(Protocol):
    """What is read of a task here (engine.tasks.model.Task)."""

    name: str
    source: Path
    python: str | None

_SPEC_RE = re.compile(r"^(?P<file>[^:]+\.py):(?P<func>[A-Za-z_][A-Za-z0-9_]*)$")
SIGNATURE = "score(output: str, answers: list[str]) -> float in 0..1"


# ---------------------------------------------------------------------------------------------------------------
# python = "metric.py:score"


def split_spec(spec: Any, where: str) -> tuple[str, str]:
    """``"metric.py:score"`` as (file, function), or a TaskError saying how to write it."""
    m = _SPEC_RE.match(spec) if isinstance(spec, str) else None
    if m is None:
        raise TaskError(f"{where}: python must be \"FILE.py:FUNCTION\", got {spec!r}",
                        'write python = "metric.py:score" (a file in the task folder and a function in it)')
    return m.group("file"), m.group("func")


def metric_file(folder: Path, file: str, where: str) -> Path:
    """The metric file inside the task folder (a path leading out of the folder is refused: a task folder must
    be self-contained to be copied or shared)."""
    path = (folder / file).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise TaskError(f"{where}: python file {file!r} is outside the task folder",
                        "put the metric file in the task folder and name it relative to it (e.g. metric.py)")
    return path


def task_code(task: Task) -> dict[str, Any] | None:
    """What code a task runs of its own (``metric = "python"``): its file, function and SHA-256, for the line a run
    prints and the record it keeps (as pytest names a conftest.py); None for a task that runs none."""
    if not task.python:
        return None
    file, func = split_spec(task.python, f"task {task.name}")
    path = metric_file(Path(task.source), file, f"task {task.name}")
    digest = sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return {"file": file, "function": func, "path": str(path), "sha256": digest}


def code_line(task_name: str, code: dict[str, Any]) -> str:
    """The one line that says a task runs its own code."""
    return (f"task {task_name} runs its own code: {code['file']}:{code['function']} "
            f"(sha256 {code['sha256'][:12]}); refuse such tasks with --no-code")


def check_python_spec(spec: Any, folder: Path, where: str) -> str:
    """Validate ``python = "FILE.py:FUNCTION"`` at load time without running the file: it must exist, parse, and
    define FUNCTION at top level (a ``def``, an assignment or an import of that name)."""
    file, func = split_spec(spec, where)
    path = metric_file(folder, file, where)
    if not path.is_file():
        raise TaskError(f"{where}: python names {file}, but there is no {path}",
                        f"add {file} to the task folder with a function {SIGNATURE}")
    from engine.tasks.files import read_utf8

    source = read_utf8(path)
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise TaskError(f"{path}, line {exc.lineno}: invalid Python ({exc.msg})",
                        "fix the syntax (python -m py_compile FILE shows the same error)") from None
    names = _top_level_names(tree)
    if func not in names:
        functions = ", ".join(sorted(n for n, kind in names.items() if kind == "def")) or "none"
        raise TaskError(f"{where}: {file} has no function {func} (functions there: {functions})",
                        f"define {SIGNATURE} in {file}, or name the right function after the colon")
    if names[func] == "async":
        raise TaskError(f"{where}: {file}:{func} is async", f"make it a plain function: {SIGNATURE}")
    return f"{file}:{func}"


def _top_level_names(tree: ast.Module) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names[node.name] = "def"
        elif isinstance(node, ast.AsyncFunctionDef):
            names[node.name] = "async"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.setdefault(target.id, "name")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.setdefault((alias.asname or alias.name).split(".")[0], "name")
    return names


@dataclass(frozen=True)
class PythonMetric:
    """A loaded task metric function, with what is needed to blame it precisely when it fails."""

    spec: str
    path: Path
    function: Callable[..., Any]

    def score(self, output: str, answers: Sequence[str], where: str = "") -> float:
        """Call the function; any failure or a bad return value is a MetricError naming ``where``."""
        at = f" on {where}" if where else ""
        try:
            value = self.function(output, list(answers))
        except Exception as exc:
            raise MetricError(f"{self.spec} failed{at}:\n{_own_traceback(exc, self.path)}",
                              f"fix {self.path} ({SIGNATURE}), then resume the run: the black box's answers are "
                              "cached, so nothing is paid again") from None
        s = check_score(value)
        if s is None:
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise MetricError(f"{self.spec} returned {shown} ({type(value).__name__}){at}: "
                              "a metric must return a number from 0 to 1",
                              f"make {self.path} return a float in [0, 1] (True/False count as 1/0)")
        return s


_LOADED: dict[tuple[str, str, int, int], PythonMetric] = {}
_LOCK = threading.Lock()


def python_metric(task: Task) -> PythonMetric:
    """The task's metric function, loaded once per version of the file (an edited file is loaded again)."""
    if not task.python:
        raise TaskError(f"task {task.name} has metric = \"python\" but no python = \"FILE.py:FUNCTION\"",
                        'add python = "metric.py:score" to its task.toml')
    where = f"task {task.name}"
    file, func = split_spec(task.python, where)
    path = metric_file(Path(task.source), file, where)
    try:
        st = path.stat()
    except OSError:
        raise TaskError(f"{where}: the metric file {path} is gone",
                        f"put {file} back into the task folder") from None
    key = (str(path), func, st.st_mtime_ns, st.st_size)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load(task.python, path, func)
        return _LOADED[key]


def _load(spec: str, path: Path, func: str) -> PythonMetric:
    """Run the metric file as a fresh module (compiled from source, so no bytecode lands in the task folder)."""
    source = path.read_text(encoding="utf-8-sig")
    name = f"iz_task_metric_{sha1(str(path).encode()).hexdigest()[:12]}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    try:
        code = compile(source, str(path), "exec")
        sys.modules[name] = module  # dataclasses and pickling in the file look their module up there
        exec(code, module.__dict__)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise MetricError(f"{spec} could not be loaded:\n{_own_traceback(exc, path)}",
                          f"fix {path} (running `python {path}` shows the same error)") from None
    fn = module.__dict__.get(func)
    if not callable(fn):
        raise MetricError(f"{spec}: {func} is not a function after running {path.name}",
                          f"define {SIGNATURE} in {path}")
    return PythonMetric(spec, path, fn)


def _own_traceback(exc: BaseException, path: Path) -> str:
    """The traceback lines inside the metric file, then the exception: where the user's code went wrong, without
    the engine's frames around it (when no frame is in the file, e.g. a wrong signature, only the exception)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip("\n")


def example_where(index: int, total: int, example: Example, output: str) -> str:
    """Which example a metric failed on, in words short enough for an error line."""
    def short(text: str) -> str:
        flat = " ".join(text.split())
        return repr(flat if len(flat) <= 60 else flat[:57] + "...")

    return (f"example {index + 1} of {total} (input {short(example.input)}, answers {short(' | '.join(example.answers))}, "
            f"output {short(output)})")


# ---------------------------------------------------------------------------------------------------------------
# metric = "judge"

#: What the judge is asked. A 0-10 scale because small models give a usable whole number far more often than a
#: fraction; the verdict is divided by 10.
JUDGE_TEMPLATE = (
    "You are grading an answer to a task.\n\n"
    "Rubric: {rubric}\n\n"
    "Input: {input}\n"
    "Reference answer: {answer}\n"
    "Answer to grade: {output}\n\n"
    "How well does the answer to grade meet the rubric? Reply with only a whole number from 0 (not at all) to 10 "
    "(fully).\nScore:"
)
#: Enough for a number (and a chat model's "Score: 7"); the judge is not asked to explain.
JUDGE_MAX_TOKENS = 16
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def judge_prompt(rubric: str, example: Example, output: str) -> str:
    """The judge's prompt for one answer (single-pass substitution: the texts may hold braces)."""
    values = {"rubric": rubric.strip(), "input": example.input, "answer": " | ".join(example.answers[:5]),
              "output": output.strip()}
    return re.sub(r"\{(rubric|input|answer|output)\}", lambda m: values[m.group(1)], JUDGE_TEMPLATE)


def judge_verdict(text: str) -> float | None:
    """The judge's reply as a score in 0..1: its first number out of 10, capped to the scale; None when the
    reply holds no number (the answer then scores 0 and the reply is kept in the history to show why)."""
    m = _NUMBER.search(text or "")
    if m is None:
        return None
    return min(max(float(m.group()) / 10.0, 0.0), 1.0)


__all__ = [
    "JUDGE_MAX_TOKENS",
    "JUDGE_TEMPLATE",
    "PythonMetric",
    "check_python_spec",
    "example_where",
    "judge_prompt",
    "judge_verdict",
    "python_metric",
]
