"""The four metrics and the normalisation they share, on the cases a sentence-answering black box produces."""

from __future__ import annotations

import pytest

from engine.errors import TaskError
from engine.tasks.metrics import METRICS, contains, exact_match, exact_set, f1, normalize, score


@pytest.mark.parametrize(("text", "expected"), [
    ("Cold", "cold"),
    ("  COLD!  ", "cold"),
    ("The antonym is cold.", "the antonym is cold"),
    ("Cold. Also chilly.", "cold"),
    ("cold\nInput: hot\nOutput: cold", "cold"),
    ("\n\n  cold\nmore", "cold"),                # first NON-blank line
    ("well-known", "well known"),
    ("salt and pepper", "salt pepper"),
    ("Rock and roll and more", "rock roll more"),
    ("Android", "android"),                      # "and" only as a word
    ("3.5", "3.5"),                              # a decimal point does not end a sentence
    ("The answer is 3.5. Next", "the answer is 3.5"),
    ("5.", "5"),
    ("-5", "-5"),                                # a minus sign is kept
    ("3 - probably", "3 probably"),
    ("U.S.A. is big", "usa"),
    ("don't", "dont"),
    ("cold,hot;warm", "cold hot warm"),
    ("...cold", "cold"),
    ("¿Qué?", "qué"),
    ("", ""),
    ("   \n  ", ""),
    (".", ""),
    ("and", ""),
    ("Output: cold", "cold"),                    # the prompt's answer label, repeated
    ("answer:Cold.", "cold"),
    ("Outputs: cold", "outputs cold"),           # only the label itself
])
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_exact_match() -> None:
    assert exact_match("Cold.", ["cold"]) == 1.0
    assert exact_match("COLD!", ["cold"]) == 1.0
    assert exact_match("The answer is cold.", ["cold"]) == 0.0
    assert exact_match("chilly", ["cold", "chilly"]) == 1.0         # several right answers
    assert exact_match("Salt and pepper", ["salt pepper"]) == 1.0
    assert exact_match("well-known", ["well known"]) == 1.0
    assert exact_match("cold\nhot", ["cold"]) == 1.0                # only the first line counts
    assert exact_match("hot\ncold", ["cold"]) == 0.0
    assert exact_match("", ["cold"]) == 0.0
    assert exact_match("", [""]) == 0.0                            # empty never matches, even an empty answer
    assert exact_match("3.5", ["35"]) == 0.0
    assert exact_match("-5", ["5"]) == 0.0
    assert exact_match("Output: cold", ["cold"]) == 1.0             # the repeated answer label is not the answer
    assert exact_match("Output: the answer is cold", ["cold"]) == 0.0  # but a sentence still is no exact match


def test_contains() -> None:
    assert contains("The opposite of hot is cold.", ["cold"]) == 1.0   # answer inside a sentence
    assert contains("category", ["cat"]) == 0.0                       # partial word does not count
    assert contains("The cat sat", ["cat"]) == 1.0
    assert contains("It is a New York thing", ["new york"]) == 1.0    # multi-word answers as a sequence
    assert contains("York is new", ["new york"]) == 0.0
    assert contains("Chilly, I think", ["cold", "chilly"]) == 1.0
    assert contains("It is cold\nhot", ["hot"]) == 0.0
    assert contains("", ["cold"]) == 0.0
    assert contains("cold", ["", "   "]) == 0.0                        # blank answers never match
    assert contains("Sentence 2 is the cause: It started raining.", ["It started raining."]) == 1.0


def test_f1() -> None:
    assert f1("cold", ["cold"]) == 1.0
    assert f1("the big cat", ["big cat"]) == pytest.approx(0.8)         # p=2/3, r=1
    assert f1("the big cat", ["dog", "big cat"]) == pytest.approx(0.8)  # best over answers
    assert f1("involve going up", ["involve vertical movement.", "involve going up."]) == 1.0
    assert f1("dog", ["cat"]) == 0.0
    assert f1("", ["cat"]) == 0.0
    assert f1("cat cat", ["cat"]) == pytest.approx(2 / 3)               # multiset overlap: p=1/2, r=1


def test_exact_set() -> None:
    assert exact_set("spider, chicken, tortoise", ["chicken, spider, tortoise"]) == 1.0
    assert exact_set("chicken and spider and tortoise", ["chicken, spider, tortoise"]) == 1.0
    assert exact_set("chicken, spider", ["chicken, spider, tortoise"]) == 0.0
    assert exact_set("Chicken, chicken, spider", ["spider, chicken"]) == 1.0
    assert exact_set("", ["chicken"]) == 0.0


def test_score_dispatch() -> None:
    assert set(METRICS) == {"exact_match", "contains", "f1", "exact_set"}
    assert score("contains", "It is cold.", "cold") == 1.0              # one answer as a plain string
    assert score("exact_match", None, ["cold"]) == 0.0                  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="exact_match, contains, f1, exact_set"):
        score("bleu", "x", ["x"])


def test_case_sensitive_tasks_keep_the_case() -> None:
    from engine.tasks.metrics import score

    # A case-insensitive metric cannot tell "spoon" from "SPOON": the upper-case task opts in to case.
    assert score("contains", "spoon", ["SPOON"]) == 1.0
    assert score("contains", "spoon", ["SPOON"], case_sensitive=True) == 0.0
    assert score("contains", "The word is SPOON.", ["SPOON"], case_sensitive=True) == 1.0
    assert score("exact_match", "SPOON AND FORK", ["SPOON FORK"], case_sensitive=True) == 1.0


def test_uppercase_builtin_task_is_case_sensitive() -> None:
    from engine.tasks import load_task

    task = load_task("uppercase")
    assert task.case_sensitive
    ex = task.examples[0]
    assert task.score(ex.input.lower(), ex.answers) == 0.0  # echoing the input is not an answer
    assert task.score(f"Here it is: {ex.input.upper()}", ex.answers) == 1.0
