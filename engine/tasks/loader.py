"""Finding, reading and validating task folders (``task.toml`` + ``data.jsonl``, and optionally ``demos.jsonl``).

Built-in tasks live in the repository's ``tasks/`` folder, user tasks in ``$IZ_HOME/tasks`` (see engine.paths).
Every problem is a :class:`engine.errors.TaskError` naming the file, the line where one applies, what is wrong and
how to fix it: a person editing a task by hand should never need a traceback. Reading never writes anything.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import paths
from engine.errors import TaskError
from engine.tasks.files import read_utf8
from engine.tasks.metrics import TASK_METRICS
from engine.tasks.model import APIS, PLACEHOLDERS, Example, Judge, Task

TASK_FILE = "task.toml"
DATA_FILE = "data.jsonl"
#: Examples shown to the generator only (the instruction-induction ``induce`` file); optional.
DEMOS_FILE = "demos.jsonl"
#: Keys a task.toml may hold. Unknown keys are refused so a typo ("metirc") is caught instead of ignored.
TOML_KEYS = ("name", "description", "metric", "template", "case_sensitive", "system", "api", "temperature",
             "max_tokens", "stop", "python", "judge")
#: Keys of the ``[judge]`` table.
JUDGE_KEYS = ("rubric", "endpoint")
#: Task names become folder names and CLI arguments: keep them to letters, digits, "_", "-" and ".".
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ---------------------------------------------------------------------------------------------------------------
# Validation helpers shared with the importers (they validate in memory before writing).


def check_name(name: str, where: str) -> str:
    """Refuse names that would not work as a folder name and a CLI argument."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise TaskError(
            f"{where}: task name {name!r} is not usable",
            "use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit (e.g. my_task)",
        )
    return name


def check_metric(metric: Any, where: str, allowed: tuple[str, ...] = TASK_METRICS) -> str:
    """A metric name from ``allowed`` (every task.toml metric by default; importers allow only those that need
    no more keys)."""
    if not isinstance(metric, str) or metric not in allowed:
        raise TaskError(
            f"{where}: unknown metric {metric!r}",
            f"set metric to one of: {', '.join(allowed)}",
        )
    return metric


def check_template(template: Any, where: str, system: str | None = None) -> str | None:
    """The user template; each placeholder must be in it or in the system prompt (a common set-up puts the
    instruction in the system prompt and only ``{input}`` in the user message)."""
    if template is None:
        return None
    if not isinstance(template, str):
        raise TaskError(f"{where}: template must be a string", "write template = \"...{instruction}...{input}...\"")
    missing = [p for p in PLACEHOLDERS if p not in template and p not in (system or "")]
    if missing:
        raise TaskError(
            f"{where}: template lacks {' and '.join(missing)}",
            "the template must contain both {instruction} and {input} (or the system prompt the one it lacks), "
            "or drop it to use the default",
        )
    return template


def _check_system(system: Any, where: str) -> str | None:
    if system is None:
        return None
    if not isinstance(system, str) or not system.strip():
        raise TaskError(f"{where}: system must be a non-empty string",
                        'write system = "You are ..." (it may hold {instruction}), or drop it')
    return system


def _check_sampling(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """``api``, ``temperature``, ``max_tokens`` and ``stop``: the same ranges as an endpoint profile's."""
    out: dict[str, Any] = {}
    api = meta.get("api")
    if api is not None and api not in APIS:
        raise TaskError(f"{where}: api must be \"chat\" or \"completions\", got {api!r}",
                        'write api = "chat" (system + user messages) or api = "completions" (one prompt)')
    out["api"] = api
    temperature = meta.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise TaskError(f"{where}: temperature must be a number from 0 to 2, got {temperature!r}",
                            "write temperature = 0.0 (0 = the most likely answer, what scoring usually wants)")
        temperature = float(temperature)
    out["temperature"] = temperature
    max_tokens = meta.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or not 1 <= max_tokens <= 4096):
        raise TaskError(f"{where}: max_tokens must be a whole number from 1 to 4096, got {max_tokens!r}",
                        "write max_tokens = 64 (long enough for a whole answer)")
    out["max_tokens"] = max_tokens
    stop = meta.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(x, str) and x for x in stop)):
        raise TaskError(f"{where}: stop must be a string or a list of non-empty strings, got {stop!r}"[:300],
                        'write stop = ["\\n"] (or stop = [] for none, overriding the endpoint profile\'s)')
    out["stop"] = None if stop is None else tuple(stop)
    return out


def _check_judge(meta: dict[str, Any], metric: str, where: str) -> Judge | None:
    table = meta.get("judge")
    if metric != "judge":
        if table is not None:
            raise TaskError(f"{where}: a [judge] table, but metric = {metric!r}",
                            'set metric = "judge" to have the rubric scored, or remove the [judge] table')
        return None
    if table is None or not isinstance(table, dict) or "rubric" not in table:
        raise TaskError(f"{where}: metric = \"judge\" needs a rubric",
                        'add a [judge] table with rubric = "what a good answer does" (and endpoint = "PROFILE" '
                        "to name the judging endpoint; default: the endpoint being scored)")
    unknown = sorted(set(table) - set(JUDGE_KEYS))
    if unknown:
        raise TaskError(f"{where}: unknown key(s) in [judge]: {', '.join(unknown)}",
                        f"[judge] may only hold: {', '.join(JUDGE_KEYS)}")
    rubric, endpoint = table["rubric"], table.get("endpoint")
    if not isinstance(rubric, str) or not rubric.strip():
        raise TaskError(f"{where}: the judge's rubric must be a non-empty string",
                        'write rubric = "1 when the answer is polite and answers the question, 0 otherwise"')
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.strip()):
        raise TaskError(f"{where}: the judge's endpoint must be the name of an endpoint profile",
                        'write endpoint = "openai" (a profile in the configuration), or drop it')
    return Judge(rubric=rubric.strip(), endpoint=endpoint.strip() if endpoint else None)


def _check_python(meta: dict[str, Any], metric: str, folder: Path, where: str) -> str | None:
    spec = meta.get("python")
    if metric != "python":
        if spec is not None:
            raise TaskError(f"{where}: python = {spec!r}, but metric = {metric!r}",
                            'set metric = "python" to use the function, or remove the python key')
        return None
    if spec is None:
        raise TaskError(f"{where}: metric = \"python\" needs python = \"FILE.py:FUNCTION\"",
                        'add python = "metric.py:score" and a function score(output, answers) in metric.py')
    from engine.tasks.user_metrics import check_python_spec

    return check_python_spec(spec, folder, where)


def _json_answers(record: Any) -> Any:
    """For a json task, answers may be written as JSON values in data.jsonl ({"output": {"a": 1}}); they are kept
    as JSON text like every other answer. A list is a list of right answers (write an array answer as [[1, 2]])."""
    if not isinstance(record, dict) or "output" not in record:
        return record
    out = record["output"]

    def text(v: Any) -> Any:
        return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)

    out = [text(v) for v in out] if isinstance(out, list) else text(out)
    return {**record, "output": out}


def _check_answers(ex: Example, metric: str, where: str) -> None:
    """Answers a regex or json task cannot use are refused here, on their data line, before any run pays for
    black-box calls that could never be scored."""
    for a in ex.answers:
        if metric == "regex":
            try:
                re.compile(a)
            except re.error as exc:
                raise TaskError(f"{where}: answer {a!r} is not a valid regular expression ({exc})"[:400],
                                "fix the pattern (escape literal characters like . ( [ ? with a backslash)") from None
        elif metric == "json":
            try:
                json.loads(a)
            except json.JSONDecodeError as exc:
                raise TaskError(f"{where}: answer {a!r} is not valid JSON ({exc.msg})"[:400],
                                'write the answer as JSON text ("{\\"a\\": 1}", "\\"word\\"") or as a JSON '
                                'value ({"a": 1})') from None


def make_example(record: Any, where: str) -> Example:
    """Validate one ``{"input": str, "output": str | [str, ...]}`` record; ``where`` is "file, line N"."""
    if not isinstance(record, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(record).__name__}",
                        'write one {"input": "...", "output": "..."} object per line')
    if "input" not in record:
        raise TaskError(f"{where}: missing \"input\"", 'every line needs {"input": "...", "output": "..."}')
    if "output" not in record:
        raise TaskError(f"{where}: missing \"output\"", 'every line needs {"input": "...", "output": "..."}')
    inp, out = record["input"], record["output"]
    if not isinstance(inp, str) or not inp.strip():
        raise TaskError(f"{where}: \"input\" must be a non-empty string, got {inp!r}"[:300],
                        "give the input as a JSON string with some text in it")
    answers = [out] if isinstance(out, str) else out
    if not isinstance(answers, list):
        raise TaskError(f"{where}: \"output\" must be a string or a list of strings, got {type(out).__name__}",
                        'write "output": "answer" or "output": ["answer", "other right answer"]')
    if not answers:
        raise TaskError(f"{where}: \"output\" is an empty list", "give at least one right answer")
    for a in answers:
        if not isinstance(a, str) or not a.strip():
            raise TaskError(f"{where}: every answer must be a non-empty string, got {a!r}"[:300],
                            "remove empty answers or fill them in")
    return Example(input=inp, answers=tuple(answers))


def parse_jsonl(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object) for the non-blank lines of a JSONL text."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{path}, line {lineno}: invalid JSON ({exc.msg}, column {exc.colno})",
                            "write one JSON object per line") from None


def duplicate_inputs(examples: Iterable[Example]) -> int:
    seen: set[str] = set()
    dups = 0
    for ex in examples:
        dups += ex.input in seen
        seen.add(ex.input)
    return dups


# ---------------------------------------------------------------------------------------------------------------
# Reading one folder.


def _read_toml(folder: Path) -> dict[str, Any]:
    toml_path = folder / TASK_FILE
    if not toml_path.is_file():
        raise TaskError(f"{folder}: no {TASK_FILE}",
                        f"add {TASK_FILE} with name, description and metric (or rename the folder to start with '_')")
    text = read_utf8(toml_path)
    try:
        meta = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{toml_path}: invalid TOML ({exc})",
                        'fix the syntax, e.g. name = "my_task" and metric = "exact_match"') from None
    unknown = sorted(set(meta) - set(TOML_KEYS))
    if unknown:
        raise TaskError(f"{toml_path}: unknown key(s) {', '.join(unknown)}",
                        f"a task.toml may only hold: {', '.join(TOML_KEYS)}")
    return meta


def load_folder(folder: Path, *, builtin: bool = False) -> Task:
    """Load and validate one task folder."""
    folder = Path(folder)
    meta = _read_toml(folder)
    toml_path = folder / TASK_FILE
    where = str(toml_path)
    name = check_name(meta.get("name", folder.name), where)
    if "metric" not in meta:
        raise TaskError(f"{toml_path}: no metric", f"add metric = one of: {', '.join(TASK_METRICS)}")
    metric = check_metric(meta["metric"], where)
    description = meta.get("description", "")
    if not isinstance(description, str):
        raise TaskError(f"{toml_path}: description must be a string", 'write description = "what the task is"')
    system = _check_system(meta.get("system"), where)
    template = check_template(meta.get("template"), where, system)
    case_sensitive = meta.get("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise TaskError(f"{toml_path}: case_sensitive must be true or false", "write case_sensitive = true")
    sampling = _check_sampling(meta, where)
    judge = _check_judge(meta, metric, where)
    python = _check_python(meta, metric, folder, where)

    data_path = folder / DATA_FILE
    if not data_path.is_file():
        raise TaskError(f"{folder}: no {DATA_FILE}", 'add data.jsonl with one {"input": ..., "output": ...} a line')
    examples = _read_examples(data_path, metric)
    if not examples:
        raise TaskError(f"{data_path}: no examples", 'add at least one {"input": "...", "output": "..."} line')
    demos_path = folder / DEMOS_FILE
    demos = _read_examples(demos_path, metric) if demos_path.is_file() else ()
    if demos_path.is_file() and not demos:
        raise TaskError(f"{demos_path}: no examples",
                        f"add demonstration lines, or remove {DEMOS_FILE} to draw demos from {DATA_FILE}")
    notes = []
    dups = duplicate_inputs(examples)
    if dups:
        notes.append(f"task {name} has {dups} repeated input(s); a repeat may land in two splits")
    if template is None and system and "{instruction}" in system:
        notes.append("the system prompt and the default template both hold {instruction}, so the instruction is "
                     'sent twice; set template = "Input: {input}\\nOutput:" to send it once')
    return Task(name=name, description=description.strip(), metric=metric, template=template, examples=examples,
                source=folder, builtin=builtin, notes=tuple(notes),
                case_sensitive=case_sensitive, system=system, judge=judge, python=python, demos=demos, **sampling)


def _read_examples(path: Path, metric: str) -> tuple[Example, ...]:
    text = read_utf8(path)
    out = []
    for n, rec in parse_jsonl(text, path):
        where = f"{path}, line {n}"
        ex = make_example(_json_answers(rec) if metric == "json" else rec, where)
        _check_answers(ex, metric, where)
        out.append(ex)
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------------
# Finding tasks.


@dataclass(frozen=True)
class _Entry:
    """A task folder found on disk, with the name it declares (read cheaply, without its data)."""

    folder: Path
    name: str
    builtin: bool


def _task_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def _declared_name(folder: Path) -> str:
    """The name a folder's task.toml declares; the folder name when it cannot be read (reported on load)."""
    try:
        name = tomllib.loads(read_utf8(folder / TASK_FILE)).get("name", folder.name)
    except (TaskError, tomllib.TOMLDecodeError, OSError):
        return folder.name
    return name if isinstance(name, str) else folder.name


def _entries() -> list[_Entry]:
    out = [_Entry(f, _declared_name(f), True) for f in _task_folders(paths.builtin_tasks_dir())]
    out += [_Entry(f, _declared_name(f), False) for f in _task_folders(paths.user_tasks_dir())]
    return out


def _duplicate_error(name: str, entries: list[_Entry]) -> TaskError:
    where = "; ".join(f"{e.folder / TASK_FILE} ({'built-in' if e.builtin else 'user'})" for e in entries)
    return TaskError(f"task name {name!r} is declared more than once: {where}",
                     "rename the user task (its name in task.toml and its folder) so every name is unique")


def task_names() -> dict[str, bool]:
    """Every declared task name and whether it is built-in (cheap: reads task.toml files only)."""
    return {e.name: e.builtin for e in _entries()}


def list_tasks(errors: list[TaskError] | None = None) -> list[Task]:
    """Every task, built-in first, then user tasks, each sorted by name.

    A bad folder raises its TaskError, unless ``errors`` is given: then problems are appended to it and the
    good tasks are still returned (what ``iz tasks list`` and the TUI want: one broken user task should not hide
    the others).
    """
    entries = _entries()
    by_name: dict[str, list[_Entry]] = {}
    for e in entries:
        by_name.setdefault(e.name, []).append(e)
    tasks: list[Task] = []
    for e in entries:
        try:
            if len(by_name[e.name]) > 1:
                if e is not by_name[e.name][0]:
                    continue  # reported once, for the first folder
                raise _duplicate_error(e.name, by_name[e.name])
            tasks.append(load_folder(e.folder, builtin=e.builtin))
        except TaskError as exc:
            if errors is None:
                raise
            errors.append(exc)
    return sorted(tasks, key=lambda t: (not t.builtin, t.name))


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith(".") or (Path(name) / TASK_FILE).is_file()


def load_task(name: str | Path) -> Task:
    """Load a task by name (built-in or user) or by the path of a task folder."""
    if isinstance(name, Path) or _looks_like_path(name):
        folder = Path(name).expanduser()
        if not (folder / TASK_FILE).is_file():
            raise TaskError(f"no task folder at {folder} (no {TASK_FILE} there)",
                            "give a task name from `iz tasks list` or the path of a folder holding task.toml")
        builtin_root = paths.builtin_tasks_dir().resolve()
        return load_folder(folder, builtin=folder.resolve().parent == builtin_root)
    matches = [e for e in _entries() if e.name == name]
    if len(matches) > 1:
        raise _duplicate_error(name, matches)
    if not matches:
        known = sorted(task_names())
        shown = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
        hint = f"known tasks: {shown}" if known else "no tasks found"
        raise TaskError(f"no task named {name!r} ({hint})",
                        "check `iz tasks list`, or add one with `iz tasks import FILE`")
    return load_folder(matches[0].folder, builtin=matches[0].builtin)
