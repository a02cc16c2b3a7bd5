"""Importing a task from a data file into the user tasks folder (``$IZ_HOME/tasks/<name>/``).

Three formats, picked by the file extension:

- ``.json``: the instruction-induction format ``{"metadata": ..., "examples": {"1": {...}, ...}}`` read with the
  paper's per-task rules (see the benchmark README); a plain JSON list of objects is read like JSONL;
- ``.jsonl`` / ``.ndjson``: one object a line, with ``input``/``output`` keys or the keys named by
  ``input_col``/``output_col``; the output may be a string or a list of right answers;
- ``.csv`` / ``.tsv``: a header row; the input and output columns default to ``input``/``output``; several right
  answers go in one cell separated by ``answer_sep`` (default ``|``).

Everything is read and validated in memory first; only then is the task written, into a hidden temporary folder
that is re-read with the ordinary loader and renamed into place. Any failure leaves the tasks folder as it was.

Inputs and answers are stripped of surrounding white space, repeated answers of one example are merged, and an
input seen before is dropped (the first one is kept) so that a repeat can never land in both dev and test.

Names: the default name is the file stem ("sum.json" -> "sum"). The instruction-induction benchmark has an
``induce/`` and an ``execute/`` file per task with the same stem; the first import takes the stem, and the second
is refused with a fix naming ``<stem>_<folder>`` (e.g. ``--name sum_execute``) as the name to use.

:func:`import_induce_execute` merges such a pair into one task instead. By default it keeps the paper's set-up:
the ``induce`` examples become the task's ``demos.jsonl`` (shown to the generator only) and the ``execute``
examples its ``data.jsonl`` (dev and test), so no score is measured on an example the generator was shown.
``pooled=True`` puts both files into one pool instead (demos, dev and test then drawn from it per seed), which is
what the quality benchmark uses to get the largest test split.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine import paths
from engine.errors import TaskError
from engine.tasks.files import read_utf8
from engine.tasks.limits import check_count, check_sizes
from engine.tasks.loader import (
    DATA_FILE,
    DEMOS_FILE,
    TASK_FILE,
    check_metric,
    check_name,
    check_template,
    load_folder,
    make_example,
    parse_jsonl,
    task_names,
)
from engine.tasks.metrics import ANSWER_METRICS, METRICS
from engine.tasks.model import Example, Task

#: The metrics an import can set: those that need nothing but the data (python and judge need task.toml keys).
IMPORT_METRICS: tuple[str, ...] = tuple(ANSWER_METRICS)

#: The paper's metric for the instruction-induction tasks that do not use exact match.
II_METRICS: dict[str, str] = {
    "common_concept": "f1",
    "informal_to_formal": "f1",
    "orthography_starts_with": "exact_set",
    "taxonomy_animal": "exact_set",
    "synonyms": "contains",
}
DEFAULT_METRIC = "exact_match"
FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
#: Seed of the sentence order in cause_and_effect inputs: fixed, so importing a file twice gives the same task.
CAUSE_EFFECT_SEED = 0

# One raw record: where it came from ("file, line 3" / "file, example 7"), its input, its answers.
_Raw = tuple[str, Any, Any]


def paper_metric(stem: str) -> str:
    """The metric the InstructZero paper uses for an instruction-induction task (exact_match when unknown)."""
    return II_METRICS.get(stem, DEFAULT_METRIC)


# ---------------------------------------------------------------------------------------------------------------
# Readers: each returns raw records; validation is shared.


def _primary_first(primary: Any, answers: Any) -> Any:
    """Put the dataset's reference answer first (demos show the first answer) without changing the answer set
    except to add the reference answer when the list lacks it."""
    if not isinstance(answers, list):
        return answers
    if isinstance(primary, str) and primary:
        return [primary] + [a for a in answers if a != primary]
    return answers


def _ii_record(ex: dict[str, Any], where: str, rng: random.Random) -> tuple[Any, Any]:
    """Apply the benchmark's reading rules, recognised by the fields an example carries."""
    if "cause" in ex and "effect" in ex:  # cause_and_effect
        cause, effect = ex["cause"], ex["effect"]
        if not isinstance(cause, str) or not isinstance(effect, str):
            raise TaskError(f"{where}: \"cause\" and \"effect\" must be strings", "fix the example")
        first, second = (cause, effect) if rng.random() < 0.5 else (effect, cause)
        return f"Sentence 1: {first.strip()} Sentence 2: {second.strip()}", cause
    if "items" in ex and "all_common_concepts" in ex:  # common_concept
        items = ex["items"]
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise TaskError(f"{where}: \"items\" must be a list of strings", "fix the example")
        return ", ".join(i.strip() for i in items), _primary_first(ex.get("concept"), ex["all_common_concepts"])
    if "other_rhymes" in ex:  # rhymes
        return ex.get("input"), _primary_first(ex.get("output"), ex["other_rhymes"])
    if "possible_translations" in ex:  # translation_en-de / -es / -fr
        return ex.get("input"), _primary_first(ex.get("output"), ex["possible_translations"])
    return ex.get("input"), ex.get("output")


def _read_json(path: Path, text: str, input_col: str | None, output_col: str | None) -> list[_Raw]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})",
                        "check the file is complete JSON; for one object per line use a .jsonl file") from None
    if isinstance(doc, list):
        return [_pick(rec, f"{path}, item {i}", input_col, output_col) for i, rec in enumerate(doc, 1)]
    examples = doc.get("examples") if isinstance(doc, dict) else None
    if isinstance(examples, list):
        examples = {str(i): e for i, e in enumerate(examples, 1)}
    if not isinstance(examples, dict):
        raise TaskError(f"{path}: not the instruction-induction format (no \"examples\" object)",
                        'use {"metadata": {...}, "examples": {"1": {"input": ..., "output": ...}, ...}}, '
                        "a JSON list of objects, a .jsonl or a .csv file")
    keys = sorted(examples, key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k))
    rng = random.Random(CAUSE_EFFECT_SEED)
    out: list[_Raw] = []
    for k in keys:
        where = f"{path}, example {k}"
        ex = examples[k]
        if not isinstance(ex, dict):
            raise TaskError(f"{where}: expected an object, got {type(ex).__name__}", "fix the example")
        if input_col or output_col:
            out.append(_pick(ex, where, input_col, output_col))
        else:
            out.append((where, *_ii_record(ex, where, rng)))
    return out


def _pick(rec: Any, where: str, input_col: str | None, output_col: str | None) -> _Raw:
    icol, ocol = input_col or "input", output_col or "output"
    if not isinstance(rec, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(rec).__name__}",
                        f'write objects like {{"{icol}": "...", "{ocol}": "..."}}')
    for col, opt in ((icol, "--input-col"), (ocol, "--output-col")):
        if col not in rec:
            keys = ", ".join(map(str, rec)) or "none"
            raise TaskError(f"{where}: no \"{col}\" key (keys here: {keys})",
                            f"add the key, or name the right one with {opt}")
    return where, rec[icol], rec[ocol]


def _read_jsonl(path: Path, text: str, input_col: str | None, output_col: str | None) -> list[_Raw]:
    return [_pick(rec, f"{path}, line {n}", input_col, output_col) for n, rec in parse_jsonl(text, path)]


def _read_csv(path: Path, text: str, input_col: str | None, output_col: str | None, answer_sep: str,
              delimiter: str) -> list[_Raw]:
    icol, ocol = input_col or "input", output_col or "output"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise TaskError(f"{path}: the file is empty", f"write a header row ({icol}{delimiter}{ocol}) and data")
        header = [h.strip() for h in header]
        for col, opt in ((icol, "--input-col"), (ocol, "--output-col")):
            if col not in header:
                raise TaskError(f"{path}, line 1: no column \"{col}\" (columns: {', '.join(header) or 'none'})",
                                f"name the right column with {opt}, or rename the header")
        i_idx, o_idx = header.index(icol), header.index(ocol)
        out: list[_Raw] = []
        start = reader.line_num
        for row in reader:
            where = f"{path}, line {start + 1}"
            start = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(i_idx, o_idx):
                raise TaskError(f"{where}: {len(row)} column(s), expected {len(header)}",
                                "every row needs as many cells as the header (quote cells holding the delimiter)")
            cell = row[o_idx]
            answers: Any = [a for a in cell.split(answer_sep)] if answer_sep else [cell]
            answers = [a for a in answers if a.strip()] or [""]
            out.append((where, row[i_idx], answers if len(answers) > 1 else answers[0]))
    except csv.Error as exc:
        raise TaskError(f"{path}, line {reader.line_num}: unreadable CSV ({exc})",
                        "check the quoting of cells") from None
    return out


# ---------------------------------------------------------------------------------------------------------------
# Validation and writing.


def _clean(raw: list[_Raw], path: Path) -> tuple[list[Example], list[str]]:
    """Validate every record (same rules and messages as the loader), strip, merge and dedupe."""
    examples: list[Example] = []
    seen: set[str] = set()
    dropped = blank_answers = 0
    for where, inp, out in raw:
        # Numbers are common in hand-made files ({"input": 3, "output": 5}); take them as their text.
        inp = _number_text(inp)
        if isinstance(out, list):
            # Lists of alternatives in real data hold stray blanks (translation_en-de has some); drop them,
            # and fail below only when no answer is left.
            kept = [t for t in (_number_text(a) for a in out) if not (isinstance(t, str) and not t.strip())]
            blank_answers += len(out) - len(kept)
            out = kept
        else:
            out = _number_text(out)
        ex = make_example({"input": inp, "output": out}, where)
        answers = tuple(dict.fromkeys(a.strip() for a in ex.answers))
        ex = Example(input=ex.input.strip(), answers=answers)
        if ex.input in seen:
            dropped += 1
            continue
        seen.add(ex.input)
        examples.append(ex)
    if not examples:
        raise TaskError(f"{path}: no examples found", "the file needs at least one example with an input and an answer")
    notes = [f"dropped {dropped} example(s) whose input repeats an earlier one (the first is kept)"] if dropped else []
    if blank_answers:
        notes.append(f"ignored {blank_answers} blank answer(s) in lists of right answers")
    return examples, notes


def _number_text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _default_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.-")[:64]
    return name or "task"


def _toml_string(value: str) -> str:
    # A JSON string (without ASCII escaping) is a valid TOML basic string: same quotes and escapes.
    return json.dumps(value, ensure_ascii=False)


def _task_toml(name: str, description: str, metric: str, template: str | None) -> str:
    lines = [f"name = {_toml_string(name)}", f"description = {_toml_string(description)}",
             f"metric = {_toml_string(metric)}"]
    if template is not None:
        lines.append(f"template = {_toml_string(template)}")
    return "\n".join(lines) + "\n"


def _data_jsonl(examples: list[Example]) -> str:
    rows = [
        json.dumps({"input": ex.input, "output": ex.answers[0] if len(ex.answers) == 1 else list(ex.answers)},
                   ensure_ascii=False)
        for ex in examples
    ]
    return "\n".join(rows) + "\n"


def read_task_file(
    path: str | Path,
    *,
    input_col: str | None = None,
    output_col: str | None = None,
    answer_sep: str = "|",
) -> tuple[list[Example], list[str]]:
    """Read and validate a data file into examples (no writing); also returns notes about what was changed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskError(f"no file at {path}", "give the path of a .json, .jsonl or .csv file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TaskError(f"{path}: unknown file type {path.suffix or '(no extension)'!r}",
                        f"use one of: {', '.join(FORMATS)} (rename the file if its content is one of these)")
    text = read_utf8(path)
    if fmt == "json":
        raw = _read_json(path, text, input_col, output_col)
    elif fmt == "jsonl":
        raw = _read_jsonl(path, text, input_col, output_col)
    else:
        raw = _read_csv(path, text, input_col, output_col, answer_sep, "\t" if fmt == "tsv" else ",")
    return _clean(raw, path)


def import_task(
    path: str | Path,
    name: str | None = None,
    metric: str | None = None,
    input_col: str | None = None,
    output_col: str | None = None,
    description: str | None = None,
    *,
    answer_sep: str = "|",
    template: str | None = None,
) -> Task:
    """Import a data file as a user task and return it as loaded back from disk (with import notes).

    Raises TaskError, having written nothing, when the file is invalid or the name is taken.
    """
    path = Path(path).expanduser()
    stem = path.stem
    name = check_name(name, "--name") if name is not None else _default_name(stem)
    is_ii = path.suffix.lower() == ".json"
    metric = check_metric(metric, "--metric", IMPORT_METRICS) if metric is not None else (
        paper_metric(stem) if is_ii else DEFAULT_METRIC)
    template = check_template(template, "--template")
    examples, notes = read_task_file(path, input_col=input_col, output_col=output_col, answer_sep=answer_sep)
    if description is None:
        split = f", {path.parent.name} split" if path.parent.name in ("induce", "execute") else ""
        description = (f"Instruction-induction task {stem}{split} (imported from {path.name})" if is_ii and stem in
                       _KNOWN_II else f"Imported from {path.name}")
    alt = f"{name}_{path.parent.name}" if path.parent.name in ("induce", "execute") else f"{name}_2"
    task = _write_task(name, description, metric, template, examples, (), alt)
    return replace(task, notes=tuple(notes) + task.notes)


def import_induce_execute(
    induce: str | Path,
    execute: str | Path,
    name: str | None = None,
    metric: str | None = None,
    description: str | None = None,
    *,
    pooled: bool = False,
    input_col: str | None = None,
    output_col: str | None = None,
    answer_sep: str = "|",
    template: str | None = None,
) -> Task:
    """Merge an instruction-induction ``induce`` file and its ``execute`` file into one user task.

    Paper set-up (default): demos from ``induce`` (written as demos.jsonl), dev and test from ``execute``; an
    ``execute`` example whose input is also an ``induce`` input is dropped, so nothing scored was shown to the
    generator. ``pooled``: one pool, ``induce`` first then the new ``execute`` inputs (the quality benchmark's
    merge). Both files are read with the same rules as :func:`import_task` (any of its formats); the default name
    is the ``induce`` file's stem and the default metric the paper's for that task. Writes nothing on any error.
    """
    induce, execute = Path(induce).expanduser(), Path(execute).expanduser()
    stem = induce.stem
    name = check_name(name, "--name") if name is not None else _default_name(stem)
    is_ii = induce.suffix.lower() == ".json"
    metric = check_metric(metric, "--metric", IMPORT_METRICS) if metric is not None else (
        paper_metric(stem) if is_ii else DEFAULT_METRIC)
    template = check_template(template, "--template")
    kw: dict[str, Any] = {"input_col": input_col, "output_col": output_col, "answer_sep": answer_sep}
    shown, shown_notes = read_task_file(induce, **kw)
    scored, scored_notes = read_task_file(execute, **kw)
    notes = [f"{induce.name} (induce): {n}" for n in shown_notes] + [f"{execute.name} (execute): {n}"
                                                                      for n in scored_notes]
    seen = {ex.input for ex in shown}
    fresh = [ex for ex in scored if ex.input not in seen]
    overlap = len(scored) - len(fresh)
    if pooled:
        examples, demos = shown + fresh, []
        if overlap:
            notes.append(f"{overlap} execute example(s) repeat an induce input: the induce one is kept")
        how = "induce + execute pooled"
    else:
        examples, demos = fresh, shown
        if overlap:
            notes.append(f"dropped {overlap} execute example(s) whose input is also an induce demo (a score must "
                         "not be measured on an example the generator was shown)")
        if not examples:
            raise TaskError(f"{execute}: every example's input is also in {induce}",
                            "give the execute file of the same task (its inputs are the ones to score on)")
        how = "demos from induce, dev and test from execute"
    if description is None:
        task_kind = "Instruction-induction task" if is_ii and stem in _KNOWN_II else "Task"
        description = f"{task_kind} {stem} ({how}; imported from {induce.name} and {execute.name})"
    task = _write_task(name, description, metric, template, examples, demos, f"{name}_2")
    return replace(task, notes=tuple(notes) + task.notes)


def _write_task(name: str, description: str, metric: str, template: str | None, examples: list[Example],
                demos: list[Example] | tuple[Example, ...], alt_name: str) -> Task:
    """Write a validated task into the user tasks folder, atomically (a hidden temporary folder re-read with the
    ordinary loader, then renamed), and return it as loaded back. Raises TaskError, having written nothing, when
    the name is taken or the folder cannot be written."""
    user_dir = paths.user_tasks_dir()
    taken = task_names()
    if name in taken or (user_dir / name).exists():
        kind = "a built-in task" if taken.get(name) else "a user task"
        raise TaskError(f"a task named {name!r} exists already ({kind})",
                        f"choose another name, e.g. --name {alt_name}")
    check_sizes(list(demos), f"task {name} (demos)")
    check_sizes(examples, f"task {name}")
    count_notes = check_count(name, len(examples), len(demos))

    created_dir = not user_dir.exists()
    tmp: Path | None = None
    try:
        paths.private_dir(user_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=user_dir))
        (tmp / TASK_FILE).write_text(_task_toml(name, description, metric, template), encoding="utf-8")
        (tmp / DATA_FILE).write_text(_data_jsonl(examples), encoding="utf-8")
        if demos:
            (tmp / DEMOS_FILE).write_text(_data_jsonl(list(demos)), encoding="utf-8")
        load_folder(tmp)  # what was written must read back with the ordinary loader
        final = user_dir / name
        os.rename(tmp, final)  # atomic on one file system; fails if the folder appeared meanwhile
        tmp = None
    except OSError as exc:
        raise TaskError(f"cannot write the task into {user_dir}: {exc.strerror or exc}",
                        "check that the data folder ($IZ_HOME) is writable and has space") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            if created_dir:
                _remove_empty(user_dir)
    loaded = load_folder(final)
    return replace(loaded, notes=loaded.notes + tuple(count_notes))


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


_KNOWN_II = {
    "active_to_passive", "antonyms", "ascii_word_recognition", "auto_categorization", "auto_debugging",
    "cause_and_effect", "common_concept", "cs_algorithms", "diff", "first_word_letter", "informal_to_formal",
    "larger_animal", "letters_list", "negation", "num_to_verbal", "object_counting", "odd_one_out",
    "orthography_starts_with", "periodic_elements", "rhymes", "second_word_letter", "sentence_similarity",
    "sentiment", "singular_to_plural", "sum", "synonyms", "taxonomy_animal", "translation_en-de",
    "translation_en-es", "translation_en-fr", "word_in_context", "word_sorting", "word_unscrambling",
}

__all__ = ["II_METRICS", "IMPORT_METRICS", "METRICS", "import_induce_execute", "import_task", "paper_metric",
           "read_task_file"]
