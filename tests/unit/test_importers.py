"""Importing tasks from the instruction-induction JSON format, JSONL and CSV.

The benchmark walk imports every file of the shared data (both folders); the error tests check that a bad file
gives a clear message and leaves the user tasks folder exactly as it was (no partial task folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import paths
from engine.errors import TaskError
from engine.tasks import import_task, list_tasks, load_task
from engine.tasks.importers import II_METRICS

II_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "instruction_induction"
II_FILES = sorted((II_DIR / folder / f.name) for folder in ("induce", "execute")
                  for f in (II_DIR / folder).glob("*.json")) if II_DIR.is_dir() else []
needs_ii = pytest.mark.skipif(not II_FILES, reason=f"instruction-induction data not found at {II_DIR}")

#: Examples added to a file whose test is about its format, so the task is large enough to import (3 at least).
FILL = [{"input": "fill one", "output": "x"}, {"input": "fill two", "output": "y"}]
FILL_CSV = "fill one,x\nfill two,y\n"
FILL_QA = '{"question": "fill one", "answer": "x"}\n{"question": "fill two", "answer": "y"}\n'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IZ_HOME", str(tmp_path / "home"))
    return tmp_path


def snapshot() -> dict[str, bytes]:
    root = paths.home()
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


def expect_import_error(path: Path, *fragments: str, **kwargs: object) -> TaskError:
    before = snapshot()
    with pytest.raises(TaskError) as info:
        import_task(path, **kwargs)  # type: ignore[arg-type]
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    assert info.value.fix
    assert snapshot() == before, "a failed import wrote something"
    return info.value


# --- the instruction-induction benchmark ----------------------------------------------------------------------


@needs_ii
def test_imports_every_instruction_induction_file(home: Path) -> None:
    assert {p.parent.name for p in II_FILES} == {"induce", "execute"}
    for path in II_FILES:
        name = f"{path.parent.name}_{path.stem}"
        imported = import_task(path, name=name)
        task = load_task(name)
        assert task.examples == imported.examples, path
        assert len(task.examples) > 0, path
        assert all(ex.input.strip() for ex in task.examples), path
        assert all(ex.answers and all(a.strip() for a in ex.answers) for ex in task.examples), path
        assert task.metric == II_METRICS.get(path.stem, "exact_match"), path
        assert not task.builtin and task.source == paths.user_tasks_dir() / name
        assert len({ex.input for ex in task.examples}) == len(task.examples), f"{path}: inputs not deduplicated"
    assert len([t for t in list_tasks() if not t.builtin]) == len(II_FILES)
    # No temporary folders left behind.
    assert not [p for p in paths.user_tasks_dir().iterdir() if p.name.startswith(".")]


@needs_ii
def test_paper_metrics(home: Path) -> None:
    expected = {"common_concept": "f1", "informal_to_formal": "f1", "orthography_starts_with": "exact_set",
                "taxonomy_animal": "exact_set", "synonyms": "contains", "sum": "exact_match",
                "antonyms": "exact_match"}
    for stem, metric in expected.items():
        assert import_task(II_DIR / "execute" / f"{stem}.json", name=f"m_{stem}").metric == metric


@needs_ii
def test_cause_and_effect(home: Path) -> None:
    raw = json.loads((II_DIR / "induce" / "cause_and_effect.json").read_text())["examples"]
    task = import_task(II_DIR / "induce" / "cause_and_effect.json", name="cae")
    assert len(task.examples) == len(raw)
    orders = set()
    for ex, rec in zip(task.examples, (raw[k] for k in sorted(raw, key=int)), strict=True):
        cause, effect = rec["cause"].strip(), rec["effect"].strip()
        assert ex.answers == (rec["cause"],)
        assert ex.input in (f"Sentence 1: {cause} Sentence 2: {effect}", f"Sentence 1: {effect} Sentence 2: {cause}")
        orders.add(ex.input.startswith(f"Sentence 1: {cause}"))
    assert orders == {True, False}, "the two sentences come in both orders"
    # Seeded: importing again (under another name) gives the same inputs.
    again = import_task(II_DIR / "induce" / "cause_and_effect.json", name="cae2")
    assert again.examples == task.examples


@needs_ii
def test_common_concept(home: Path) -> None:
    task = import_task(II_DIR / "induce" / "common_concept.json", name="cc")
    first = task.examples[0]
    assert first.input == "guitars, pendulums, neutrinos"
    assert first.answers == ("involve oscillations.",)
    second = task.examples[1]
    assert second.input == "sewing, wrenches, glue, surgery"
    assert second.answers == ("can help repair something.", "can be used for repairs.")
    assert task.metric == "f1"
    assert any("repeats an earlier one" in n for n in task.notes)


@needs_ii
def test_rhymes(home: Path) -> None:
    task = import_task(II_DIR / "execute" / "rhymes.json", name="rh")
    first = task.examples[0]
    assert first.input == "compete"
    assert first.answers[0] == "neat"  # the reference answer first (demos show it)
    assert set(first.answers) >= {"eat", "sweet", "street", "neat"}


@needs_ii
def test_translation(home: Path) -> None:
    task = import_task(II_DIR / "execute" / "translation_en-de.json", name="de_execute")
    first = task.examples[0]
    assert first.input == "place" and first.answers[0] == "Platz"
    assert {"Ort", "Stelle", "Position"} <= set(first.answers)
    assert len(first.answers) == len(set(first.answers))
    de = import_task(II_DIR / "induce" / "translation_en-de.json", name="de_induce")
    assert any("blank answer" in n for n in de.notes)


@needs_ii
def test_induce_and_execute_need_two_names(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No built-in tasks here, so the default name (the file stem) is free the first time.
    monkeypatch.setattr(paths, "builtin_tasks_dir", lambda: home / "no-builtins")
    assert import_task(II_DIR / "induce" / "negation.json").name == "negation"
    err = expect_import_error(II_DIR / "execute" / "negation.json", "'negation' exists already", "user task")
    assert "--name negation_execute" in (err.fix or "")
    assert import_task(II_DIR / "execute" / "negation.json", name="negation_execute").name == "negation_execute"


# --- JSONL and CSV --------------------------------------------------------------------------------------------


def test_jsonl_default_keys(home: Path) -> None:
    f = home / "opp.jsonl"
    f.write_text('{"input": " hot ", "output": "cold"}\n\n{"input": "up", "output": ["down", "below", "down"]}\n'
                 '{"input": "hot", "output": "freezing"}\n{"input": 3, "output": 4}\n')
    task = import_task(f, description="Opposites")
    assert task.name == "opp" and task.description == "Opposites" and task.metric == "exact_match"
    assert [(e.input, e.answers) for e in task.examples] == [
        ("hot", ("cold",)), ("up", ("down", "below")), ("3", ("4",))]
    assert task.notes == ("dropped 1 example(s) whose input repeats an earlier one (the first is kept)",
                          "3 examples: a run needs --demos 1 or fewer (the default is 5)")


def test_jsonl_named_keys(home: Path) -> None:
    f = home / "q.jsonl"
    f.write_text('{"question": "2+2", "answer": "4", "extra": 1}\n' + FILL_QA)
    task = import_task(f, name="qa", metric="contains", input_col="question", output_col="answer")
    assert task.name == "qa" and task.metric == "contains"
    assert task.examples[0].input == "2+2" and task.examples[0].answers == ("4",)


def test_json_list(home: Path) -> None:
    f = home / "list.json"
    f.write_text(json.dumps([{"input": "a", "output": "b"}, *FILL]))
    assert import_task(f).examples[0].answers == ("b",)


def test_csv_default_columns_and_answer_separator(home: Path) -> None:
    f = home / "opp.csv"
    f.write_text('input,output\nhot,cold|chilly\n"up, high",down\n\n' + FILL_CSV)
    task = import_task(f)
    assert [(e.input, e.answers) for e in task.examples][:2] == [("hot", ("cold", "chilly")), ("up, high", ("down",))]
    assert load_task("opp").examples == task.examples


def test_csv_column_options_and_custom_separator(home: Path) -> None:
    f = home / "words.csv"
    f.write_text("id,word,plural\n1,mouse,mice;mouses\n2,cat,cats\n3,dog,dogs\n", encoding="utf-8")
    task = import_task(f, input_col="word", output_col="plural", answer_sep=";", metric="exact_set")
    assert task.examples[0].answers == ("mice", "mouses")
    assert task.metric == "exact_set"


def test_csv_without_separator_keeps_the_cell_whole(home: Path) -> None:
    f = home / "pipe.csv"
    f.write_text("input,output\na,x|y\n" + FILL_CSV)
    assert import_task(f, answer_sep="").examples[0].answers == ("x|y",)


def test_tsv(home: Path) -> None:
    f = home / "t.tsv"
    f.write_text("input\toutput\na, b\tc\n" + FILL_CSV.replace(",", "\t"))
    assert import_task(f).examples[0].input == "a, b"


def test_default_name_is_sanitised(home: Path) -> None:
    f = home / "my data (v2).csv"
    f.write_text("input,output\na,b\n" + FILL_CSV)
    assert import_task(f).name == "my_data_v2"


# --- bad files: a clear message and nothing written -----------------------------------------------------------


def test_garbage_json(home: Path) -> None:
    f = home / "bad.json"
    f.write_text('{"examples": {"1": {"input": "a", "output": "b"},\n  oops}')
    expect_import_error(f, "bad.json, line 2", "invalid JSON")


def test_json_without_examples(home: Path) -> None:
    f = home / "bad.json"
    f.write_text('{"metadata": {}}')
    expect_import_error(f, "bad.json", "not the instruction-induction format")


def test_ii_example_missing_output(home: Path) -> None:
    f = home / "bad.json"
    f.write_text(json.dumps({"examples": {"1": {"input": "a", "output": "b"}, "2": {"input": "c"}}}))
    expect_import_error(f, "bad.json, example 2", '"output"')


def test_csv_missing_column(home: Path) -> None:
    f = home / "bad.csv"
    f.write_text("question,answer\na,b\n")
    err = expect_import_error(f, "bad.csv, line 1", 'no column "input"', "question, answer")
    assert "--input-col" in (err.fix or "")
    expect_import_error(f, 'no column "output"', input_col="question")


def test_csv_empty_answer(home: Path) -> None:
    f = home / "bad.csv"
    f.write_text("input,output\na,b\nc,\n")
    expect_import_error(f, "bad.csv, line 3", "non-empty string")


def test_jsonl_missing_key(home: Path) -> None:
    f = home / "bad.jsonl"
    f.write_text('{"input": "a", "output": "b"}\n{"input": "c", "answer": "d"}\n')
    err = expect_import_error(f, "bad.jsonl, line 2", 'no "output" key', "input, answer")
    assert "--output-col" in (err.fix or "")


def test_not_utf8(home: Path) -> None:
    f = home / "latin.csv"
    f.write_bytes(b"input,output\ncaf\xe9,coffee\n")
    expect_import_error(f, "latin.csv, line 2", "not UTF-8")


def test_empty_file(home: Path) -> None:
    f = home / "empty.jsonl"
    f.write_text("\n")
    expect_import_error(f, "empty.jsonl", "no examples")
    g = home / "empty.csv"
    g.write_text("")
    expect_import_error(g, "empty.csv", "empty")


def test_unknown_extension_and_missing_file(home: Path) -> None:
    f = home / "data.txt"
    f.write_text("a\tb\n")
    expect_import_error(f, "unknown file type '.txt'", ".jsonl")
    expect_import_error(home / "nope.csv", "no file at")


def test_bad_name_and_metric(home: Path) -> None:
    f = home / "ok.csv"
    f.write_text("input,output\na,b\n" + FILL_CSV)
    expect_import_error(f, "'../x'", name="../x")
    expect_import_error(f, "'bleu'", "exact_match, contains, f1, exact_set", metric="bleu")


def test_existing_names_are_refused(home: Path) -> None:
    f = home / "ok.csv"
    f.write_text("input,output\na,b\n" + FILL_CSV)
    import_task(f)
    expect_import_error(f, "'ok' exists already", "user task")
    builtin = sorted(t.name for t in list_tasks() if t.builtin)
    if builtin:
        expect_import_error(f, f"'{builtin[0]}' exists already", "built-in", name=builtin[0])
