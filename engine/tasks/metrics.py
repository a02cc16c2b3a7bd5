"""Scoring a black-box answer against a task's right answers.

Both sides are normalised the same way before comparing (DESIGN.md, "Tasks and metrics"), because a black-box model
answers in sentences ("The antonym is cold.") while the data holds bare answers ("cold"):

1. the first non-blank line (a completion often runs on into a next, invented example), without a leading
   ``Output:`` or ``Answer:`` label (a black box that continues the evaluation prompt often repeats its last label);
2. the text before the first period that ends a sentence (one followed by a space or the end of the line), so a
   decimal point ("3.5") or an abbreviation ("U.S.A. is") does not cut inside a word; leading periods
   ("...cold") are skipped so the head is never empty by accident;
3. Unicode NFKC, lower case (unless the task is case-sensitive: ``case_sensitive = true`` in its task.toml,
   for tasks whose answer IS the case, such as writing a word in upper case);
4. hyphens and dashes become spaces ("well-known" = "well known"), except a minus sign in front of a number ("-5");
5. punctuation removed (ASCII and Unicode), except a decimal point between digits: apostrophes and periods are
   deleted ("don't" = "dont", "U.S.A" = "usa"), other marks become spaces ("cold,hot" = "cold hot");
6. the word "and" removed ("salt and pepper" = "salt pepper", as the paper's " and " rule);
7. whitespace collapsed and stripped.

An empty prediction (or one that normalises to nothing) scores 0 under every metric: saying nothing is never right.

Two more metrics compare the raw output (stripped of surrounding white space), because normalising would destroy
what they check: ``regex`` (each answer is a pattern; 1 when one of them is found in the output by ``re.search``,
ignoring case unless the task is case-sensitive; anchor with ``^...$`` to demand the whole output) and ``json``
(1 when the output, after an optional Markdown code fence, starts with a JSON value equal to an answer; objects
compare without regard to key order, and ``true`` never equals ``1``). A task folder can also bring its own metric
(``python``) or have a model grade the answers (``judge``): see :mod:`engine.tasks.user_metrics`.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from engine.errors import TaskError

_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
# A sentence-ending period: a "." followed by white space or the end of the line. A decimal point ("3.5") and the
# inner periods of an abbreviation or a domain ("U.S.A", "example.com") do not end a sentence.
_SENTENCE_PERIOD = re.compile(r"\.(?=\s|$)")
# A minus sign: a dash at the start of a word, directly followed by a digit.
_MINUS = re.compile(rf"(?:(?<=\s)|^)[{_DASHES}](?=\d)")
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_ASCII_PUNCT = set(string.punctuation)
# Placeholders that survive punctuation removal, restored afterwards (private-use code points never seen in text).
_KEEP_MINUS, _KEEP_POINT = "\ue000", "\ue001"
# Punctuation deleted outright (it sits inside a word: "don't", "U.S.A"); every other mark becomes a space so
# "cold,hot" and "answer:cold" still split into words.
_DELETED = {"'": "", "\u2019": "", "\u2018": "", ".": "", "`": ""}
# The label of the evaluation prompt's answer slot, repeated by the model: "Output: cold" means "cold".
_LABEL = re.compile(r"^(?:output|answer)\s*:\s*", re.IGNORECASE)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalize(text: str, case_sensitive: bool = False) -> str:
    """Normalise an answer or a prediction for comparison (see the module docstring for the rules)."""
    if not text:
        return ""
    line = _first_line(unicodedata.normalize("NFKC", str(text)))
    line = _LABEL.sub("", line).lstrip(". \t")
    cut = _SENTENCE_PERIOD.search(line)
    if cut:
        line = line[: cut.start()]
    if not case_sensitive:
        line = line.lower()
    line = _MINUS.sub(_KEEP_MINUS, line)
    line = _DECIMAL_POINT.sub(_KEEP_POINT, line)
    for dash in _DASHES:
        line = line.replace(dash, " ")
    line = "".join(_DELETED.get(ch, " ") if _is_punct(ch) else ch for ch in line)
    line = line.replace(_KEEP_MINUS, "-").replace(_KEEP_POINT, ".")
    return " ".join(w for w in line.split() if w.lower() != "and")


def _tokens(text: str, cs: bool = False) -> list[str]:
    return normalize(text, cs).split()


def _answer_tokens(answers: Iterable[str], cs: bool = False) -> list[list[str]]:
    return [t for t in (_tokens(a, cs) for a in answers) if t]


def exact_match(prediction: str, answers: Iterable[str], case_sensitive: bool = False) -> float:
    """1 when the normalised prediction equals a normalised answer."""
    pred = _tokens(prediction, case_sensitive)
    return float(bool(pred) and any(pred == a for a in _answer_tokens(answers, case_sensitive)))


def contains(prediction: str, answers: Iterable[str], case_sensitive: bool = False) -> float:
    """1 when a normalised answer appears inside the normalised prediction as whole words.

    Matching is on token sequences, so "cat" is found in "the cat sat" but not in "category".
    """
    pred = _tokens(prediction, case_sensitive)
    if not pred:
        return 0.0
    for ans in _answer_tokens(answers, case_sensitive):
        n = len(ans)
        if any(pred[i : i + n] == ans for i in range(len(pred) - n + 1)):
            return 1.0
    return 0.0


def f1(prediction: str, answers: Iterable[str], case_sensitive: bool = False) -> float:
    """Token F1 (multiset overlap, as in SQuAD), best over the answers."""
    pred = _tokens(prediction, case_sensitive)
    if not pred:
        return 0.0
    best = 0.0
    for ans in _answer_tokens(answers, case_sensitive):
        common = sum((Counter(pred) & Counter(ans)).values())
        if common:
            precision, recall = common / len(pred), common / len(ans)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def exact_set(prediction: str, answers: Iterable[str], case_sensitive: bool = False) -> float:
    """1 when the prediction has the same set of words as an answer (order and repeats ignored)."""
    pred = set(_tokens(prediction, case_sensitive))
    return float(bool(pred) and any(pred == set(a) for a in _answer_tokens(answers, case_sensitive)))


#: The metrics that compare normalised text (see the module docstring), by name.
METRICS: dict[str, Callable[..., float]] = {
    "exact_match": exact_match,
    "contains": contains,
    "f1": f1,
    "exact_set": exact_set,
}


@lru_cache(maxsize=4096)
def _pattern(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    return re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)


def regex(prediction: str, answers: Iterable[str], case_sensitive: bool = False) -> float:
    """1 when one answer, read as a regular expression, is found in the stripped output (``re.search``).

    The loader compiles every answer of a regex task, so a bad pattern is reported on its data.jsonl line before
    any run; here it could only come from a task built in memory and raises a TaskError naming it.
    """
    text = (prediction or "").strip()
    if not text:
        return 0.0
    for a in answers:
        try:
            if _pattern(a, case_sensitive).search(text):
                return 1.0
        except re.error as exc:
            raise TaskError(f"answer {a!r} is not a valid regular expression ({exc})",
                            "fix the pattern in data.jsonl (escape literal characters with a backslash)") from None
    return 0.0


_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?```", re.DOTALL)


def json_value(prediction: str) -> tuple[bool, Any]:
    """(True, value) when the output starts with a JSON value (after white space and an optional Markdown code
    fence), ignoring what follows it (a completion often runs on past the answer); (False, None) otherwise."""
    text = (prediction or "").strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except (json.JSONDecodeError, RecursionError):
        return False, None
    return True, value


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: key order is ignored, 1 equals 1.0, but a boolean never equals a number (Python's
    ``True == 1`` would make ``{"ok": 1}`` pass for ``{"ok": true}``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def json_match(prediction: str, answers: Iterable[str], case_sensitive: bool = False) -> float:
    """1 when the output parses as JSON equal to one answer (each answer is JSON text; see :func:`json_equal`).
    ``case_sensitive`` is ignored: JSON strings are compared exactly."""
    ok, value = json_value(prediction)
    if not ok:
        return 0.0
    for a in answers:
        try:
            expected = json.loads(a)
        except json.JSONDecodeError:
            raise TaskError(f"answer {a!r} is not valid JSON",
                            'write each answer of a json task as JSON text, e.g. "{\\"a\\": 1}"') from None
        if json_equal(value, expected):
            return 1.0
    return 0.0


#: Every metric that compares an output with the right answers by itself, by name.
ANSWER_METRICS: dict[str, Callable[..., float]] = {**METRICS, "regex": regex, "json": json_match}
#: Every metric a task.toml may name: the answer metrics, a function of the task folder, or a model as judge.
TASK_METRICS: tuple[str, ...] = (*ANSWER_METRICS, "python", "judge")


def check_score(value: Any) -> float | None:
    """``value`` as a score when it is a real number from 0 to 1 (a bool counts as 0 or 1), else None."""
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, numbers.Real):  # numpy scalars are Real too; a string "0.5" is not a score
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def score(metric: str, prediction: str, answers: str | Iterable[str], case_sensitive: bool = False) -> float:
    """Score one prediction in [0, 1] with the named metric; ``answers`` may be one string or several."""
    try:
        fn = ANSWER_METRICS[metric]
    except KeyError:
        if metric in TASK_METRICS:
            raise TaskError(f"the {metric} metric needs its task (its function or its judge), not only a name",
                            "score through Task.score or engine.blackbox.score_instruction") from None
        raise TaskError(
            f"unknown metric {metric!r}",
            f"use one of: {', '.join(TASK_METRICS)}",
        ) from None
    if isinstance(answers, str):
        answers = (answers,)
    return fn(prediction or "", tuple(answers), case_sensitive)
