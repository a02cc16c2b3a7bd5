"""Scoring a black-box answer against a task's right answers.

Both sides are normalised the same way before comparing (DESIGN.md, "Tasks and metrics"), because a black-box model
answers in sentences ("The antonym is cold.") while the data holds bare answers ("cold"):

1. the first non-blank line (a completion often runs on into a next, invented example);
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
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable

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
    line = _first_line(unicodedata.normalize("NFKC", str(text))).lstrip(". \t")
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


#: Every metric a task may name, by name.
METRICS: dict[str, Callable[..., float]] = {
    "exact_match": exact_match,
    "contains": contains,
    "f1": f1,
    "exact_set": exact_set,
}


def score(metric: str, prediction: str, answers: str | Iterable[str], case_sensitive: bool = False) -> float:
    """Score one prediction in [0, 1] with the named metric; ``answers`` may be one string or several."""
    try:
        fn = METRICS[metric]
    except KeyError:
        from engine.errors import TaskError

        raise TaskError(
            f"unknown metric {metric!r}",
            f"use one of: {', '.join(METRICS)}",
        ) from None
    if isinstance(answers, str):
        answers = (answers,)
    return fn(prediction or "", tuple(answers), case_sensitive)
