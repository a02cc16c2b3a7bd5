"""Checks on the built-in task suite under tasks/ (standard library only).

Every task folder must hold a valid task.toml and data.jsonl.  For the tasks
whose answers can be computed from the input, every answer is re-derived here,
independently of tests/data/make_builtin_tasks.py.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS_DIR = REPO_ROOT / "tasks"
GENERATOR = REPO_ROOT / "tests" / "data" / "make_builtin_tasks.py"

METRICS = {"exact_match", "contains", "f1", "exact_set"}
ALLOWED_KEYS = {"name", "description", "metric", "template", "case_sensitive"}
MIN_EXAMPLES = 150
MIN_TASKS = 12

# Tasks whose data.jsonl is produced by the generator script.
GENERATED = {
    "first_letter",
    "second_letter",
    "last_letter",
    "uppercase",
    "letter_count",
    "sum",
    "difference",
    "number_to_words",
    "word_sorting",
}
REQUIRED = GENERATED | {
    "singular_to_plural",
    "antonyms",
    "larger_animal",
    "sentiment",
    "capital_city",
}
# Tasks where the right answer may legitimately equal the input (sheep ->
# sheep, cut -> cut) or where the normalisation makes it so (upper case is
# lower-cased before scoring).  In every other task, a reply that merely
# repeats the input must not score.
ECHO_EXEMPT = {"singular_to_plural", "past_tense", "uppercase"}

# Folders whose name starts with "_" or "." are not tasks (the loader skips them).
TASK_DIRS = (
    sorted(p for p in TASKS_DIR.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    if TASKS_DIR.is_dir()
    else []
)
TASK_NAMES = [p.name for p in TASK_DIRS]


def normalize(text: str) -> str:
    """The scoring normalisation, re-stated here (stdlib only) for the checks.

    First non-blank line, text before the first sentence-ending period, lower
    case, hyphens to spaces, apostrophes and periods deleted, other
    punctuation to spaces, the word "and" removed, whitespace collapsed.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = re.split(r"\.(?=\s|$)", text, maxsplit=1)[0].lower().replace("-", " ")
    text = re.sub(r"['\u2019.]", "", text)
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(w for w in text.split() if w != "and")


def answers_of(record) -> list[str]:
    out = record["output"]
    return [out] if isinstance(out, str) else list(out)


def load_records(task_dir: Path) -> list[dict]:
    raw = (task_dir / "data.jsonl").read_bytes()
    text = raw.decode("utf-8")  # strict: raises on invalid UTF-8
    assert text.endswith("\n"), "data.jsonl must end with a newline"
    lines = text.split("\n")[:-1]
    records = []
    for number, line in enumerate(lines, 1):
        assert line.strip(), f"blank line {number}"
        record = json.loads(line)
        assert isinstance(record, dict), f"line {number} is not an object"
        records.append(record)
    return records


def records_of(name: str) -> list[dict]:
    return load_records(TASKS_DIR / name)


# --------------------------------------------------------------------------
# Suite-level checks
# --------------------------------------------------------------------------


def test_enough_tasks():
    assert len(TASK_DIRS) >= MIN_TASKS, TASK_NAMES


def test_required_tasks_present():
    missing = REQUIRED - set(TASK_NAMES)
    assert not missing, f"missing built-in tasks: {sorted(missing)}"


def test_generated_data_is_up_to_date():
    spec = importlib.util.spec_from_file_location("make_builtin_tasks", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(module.GENERATORS) == GENERATED
    built = module.build_all()
    assert built == module.build_all(), "generator is not deterministic"
    for name, text in built.items():
        on_disk = (TASKS_DIR / name / "data.jsonl").read_text(encoding="utf-8")
        assert on_disk == text, f"{name}: rerun tests/data/make_builtin_tasks.py"


# --------------------------------------------------------------------------
# Per-task format checks
# --------------------------------------------------------------------------


@pytest.mark.parametrize("task_dir", TASK_DIRS, ids=TASK_NAMES)
def test_task_toml(task_dir: Path):
    with open(task_dir / "task.toml", "rb") as fh:
        config = tomllib.load(fh)
    assert set(config) <= ALLOWED_KEYS, f"unknown keys: {set(config) - ALLOWED_KEYS}"
    assert config.get("name") == task_dir.name
    assert re.fullmatch(r"[a-z][a-z0-9_]*", task_dir.name), "folder name must be snake_case"
    description = config.get("description")
    assert isinstance(description, str) and description.strip()
    assert config.get("metric") in METRICS
    if "template" in config:
        template = config["template"]
        assert isinstance(template, str)
        assert "{instruction}" in template and "{input}" in template


@pytest.mark.parametrize("task_dir", TASK_DIRS, ids=TASK_NAMES)
def test_task_data_format(task_dir: Path):
    records = load_records(task_dir)
    assert len(records) >= MIN_EXAMPLES, f"only {len(records)} examples"
    seen = set()
    for record in records:
        assert set(record) == {"input", "output"}, record
        source = record["input"]
        assert isinstance(source, str) and source.strip(), record
        assert source == source.strip() and "\n" not in source, record
        assert source not in seen, f"duplicate input {source!r}"
        seen.add(source)

        output = record["output"]
        if isinstance(output, list):
            assert output, f"empty answer list for {source!r}"
            assert len(set(output)) == len(output), f"repeated answer for {source!r}"
        else:
            assert isinstance(output, str), record
        for answer in answers_of(record):
            assert isinstance(answer, str) and answer.strip(), record
            assert answer == answer.strip() and "\n" not in answer, record
            # Normalisation keeps only the text before the first period, so an
            # answer holding one could never be matched in full.
            assert "." not in answer, f"period in answer {answer!r}"
            assert normalize(answer), f"answer {answer!r} normalises to nothing"


def _echo_scores(metric: str, source: str, answer: str) -> bool:
    """Whether a reply that is just the input would be scored right."""
    source, answer = normalize(source), normalize(answer)
    if metric == "contains":
        return f" {answer} " in f" {source} "
    if metric == "exact_match":
        return source == answer
    if metric == "exact_set":
        return set(source.split()) == set(answer.split())
    return False  # f1 gives partial credit by design


@pytest.mark.parametrize("task_dir", TASK_DIRS, ids=TASK_NAMES)
def test_answers_not_found_by_echoing_input(task_dir: Path):
    if task_dir.name in ECHO_EXEMPT:
        pytest.skip("the answer may legitimately equal the input in this task")
    with open(task_dir / "task.toml", "rb") as fh:
        metric = tomllib.load(fh)["metric"]
    for record in load_records(task_dir):
        for answer in answers_of(record):
            assert not _echo_scores(metric, record["input"], answer), (
                f"{record['input']!r}: repeating the input would match answer {answer!r}"
            )


# --------------------------------------------------------------------------
# Independent re-verification of computable answers
# --------------------------------------------------------------------------


def _two_numbers(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"([1-9][0-9]*) ([1-9][0-9]*)", text)
    assert match, f"bad input {text!r}"
    return int(match.group(1)), int(match.group(2))


def test_sum_answers():
    for record in records_of("sum"):
        a, b = _two_numbers(record["input"])
        assert record["output"] == str(a + b), record


def test_difference_answers():
    for record in records_of("difference"):
        a, b = _two_numbers(record["input"])
        assert a > b, record
        assert record["output"] == str(a - b), record


_SMALL_TEXT = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
)
_SMALL = {word: value for value, word in enumerate(_SMALL_TEXT.split())}
_TENS = dict(
    zip(
        ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"],
        range(20, 100, 10),
        strict=True,
    )
)


def words_to_number(text: str) -> int:
    """Parse English number words (up to the thousands) back to an int.

    Strict: every token must be a number word (or "and" between groups),
    a tens word may only be followed by a unit, and "hundred"/"thousand"
    must follow a quantity.
    """
    tokens = [t for t in text.replace("-", " ").split() if t != "and"]
    assert tokens, text
    total = 0  # completed thousands
    group = 0  # value below one thousand being read
    previous = None
    for token in tokens:
        if token in _SMALL:
            value = _SMALL[token]
            assert value != 0, text
            if previous in _TENS:
                assert value < 10, text
            else:
                assert group % 100 == 0, text
            group += value
        elif token in _TENS:
            assert group % 100 == 0, text
            group += _TENS[token]
        elif token == "hundred":
            assert 1 <= group <= 9, text
            group *= 100
        elif token == "thousand":
            assert total == 0 and 1 <= group <= 999, text
            total, group = group * 1000, 0
        else:
            raise AssertionError(f"unknown number word {token!r} in {text!r}")
        previous = token
    return total + group


def test_words_to_number_parser():
    assert words_to_number("three hundred forty-two") == 342
    assert words_to_number("three hundred and forty two") == 342
    assert words_to_number("one thousand and five") == 1005
    assert words_to_number("nine thousand nine hundred ninety-nine") == 9999
    assert words_to_number("twelve") == 12
    for bad in ("forty twelve", "hundred", "two two", "twenty thirty"):
        with pytest.raises(AssertionError):
            words_to_number(bad)


def test_number_to_words_answers():
    for record in records_of("number_to_words"):
        assert re.fullmatch(r"[1-9][0-9]*", record["input"]), record
        number = int(record["input"])
        answers = answers_of(record)
        for answer in answers:
            assert words_to_number(answer) == number, record
        # The plain form (without "and") is always offered.
        assert any(" and " not in f" {a} " for a in answers), record


def test_word_sorting_answers():
    for record in records_of("word_sorting"):
        words = record["input"].split()
        assert len(words) >= 2 and len(set(words)) == len(words), record
        assert all(re.fullmatch(r"[a-z]+", w) for w in words), record
        assert isinstance(record["output"], str), record
        expected = sorted(words)
        assert record["output"].split() == expected, record
        assert all(a < b for a, b in itertools.pairwise(expected))


@pytest.mark.parametrize(
    "name, pick",
    [
        ("first_letter", lambda w: w[0]),
        ("second_letter", lambda w: w[1]),
        ("last_letter", lambda w: w[-1]),
    ],
)
def test_letter_answers(name, pick):
    for record in records_of(name):
        word = record["input"]
        assert re.fullmatch(r"[a-z]{2,}", word), record
        assert record["output"] == pick(word), record


def test_uppercase_answers():
    for record in records_of("uppercase"):
        word = record["input"]
        assert re.fullmatch(r"[a-z]+", word), record
        assert record["output"] == word.upper(), record


def test_letter_count_answers():
    for record in records_of("letter_count"):
        word = record["input"]
        assert re.fullmatch(r"[a-z]+", word), record
        answers = answers_of(record)
        assert str(len(word)) in answers, record
        for answer in answers:
            value = int(answer) if answer.isdigit() else words_to_number(answer)
            assert value == len(word), record


# --------------------------------------------------------------------------
# Light structural checks on hand-written tasks
# --------------------------------------------------------------------------


def test_sentiment_labels_balanced():
    labels = [record["output"] for record in records_of("sentiment")]
    assert set(labels) == {"positive", "negative"}
    share = labels.count("positive") / len(labels)
    assert 0.4 <= share <= 0.6, share


def test_larger_animal_answer_is_one_of_the_pair():
    records = records_of("larger_animal")
    first = 0
    for record in records:
        pair = record["input"].split(", ")
        assert len(pair) == 2 and pair[0] != pair[1], record
        animal, *variants = answers_of(record)
        assert animal in pair, record
        assert variants == [f"the {animal}"], record
        first += animal == pair[0]
    # The larger animal is listed first in some examples and second in others.
    assert 0.3 <= first / len(records) <= 0.7


def test_antonym_differs_from_word():
    for record in records_of("antonyms"):
        word = normalize(record["input"])
        assert all(normalize(a) != word for a in answers_of(record)), record


@pytest.mark.skipif("country_to_continent" not in TASK_NAMES, reason="optional task")
def test_continent_names():
    continents = {
        "africa",
        "asia",
        "europe",
        "north america",
        "south america",
        "oceania",
        "australia",
        "antarctica",
    }
    for record in records_of("country_to_continent"):
        for answer in answers_of(record):
            assert normalize(answer) in continents, record
