"""The first run a new user makes: the default quick run writes instructions that name the task.

On the model that the test set-up pulls (Qwen2.5-Coder-0.5B, as generator and black box), a quick run (the TUI's
"quick" preset: 10 evaluations, 5 dev and 10 test examples) on antonyms (built in) and on negation (imported
from the instruction-induction data in ../shared, as a user would import it).

What the 0.5B can do, measured (BENCHMARKS.md, "The generator's prompt"): on antonyms its best instruction names
the task ("Create a function that takes a string input and returns the opposite string."), and that is asserted
by its words ("opposite"/"antonym"), not its text. On negation it does not: its best is "Analyze the given
input-output pairs and determine which pair does not match the output." (no candidate of the ten says negat* or
opposite), so for negation the test asserts only what the 0.5B does reliably, that most candidates are real
instructions rather than echoes of the prompt (8 of 10). The default generator (1.5B, not pulled in CI) names
negation in every seed of the quick-run table ("Determine the negation of each given statement.").
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from engine import paths
from engine.config import RunSettings, load_config
from engine.models import catalog
from engine.prompts import PLACEHOLDER_INSTRUCTION, is_echo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

USER_MODELS = Path(os.environ.get("IZ_MODELS") or paths.models_dir())
USER_CACHE = Path(os.environ.get("IZ_CACHE") or paths.cache_dir())
QWEN = "qwen2.5-coder-0.5b"
II = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "instruction_induction"
#: The TUI's quick preset (iz_tui.requests.PRESETS["quick"]).
QUICK = dict(budget_evaluations=10, n_init=5, batch_size=5, n_iterations=1, n_dev=5, n_test=10, seed=0)
NAMES_THE_TASK = {"antonyms": re.compile(r"\b(opposite|antonym)", re.I)}


@pytest.fixture
def qwen(monkeypatch: pytest.MonkeyPatch) -> str:
    if not (USER_MODELS / catalog.get(QWEN).file).is_file():
        pytest.skip(f"{QWEN} is not pulled into {USER_MODELS}: run `iz models pull {QWEN}` (the test set-up does)")
    monkeypatch.setenv("IZ_MODELS", str(USER_MODELS))
    monkeypatch.setenv("IZ_CACHE", str(USER_CACHE))
    monkeypatch.setenv("IZ_GENERATOR__MODEL", QWEN)
    monkeypatch.setenv("IZ_ENDPOINTS__EMBEDDED__MODEL", QWEN)
    return QWEN


def import_negation() -> str:
    from engine.tasks.importers import import_induce_execute

    induce, execute = II / "induce" / "negation.json", II / "execute" / "negation.json"
    if not (induce.is_file() and execute.is_file()):
        pytest.skip(f"the instruction-induction data is not at {II} (it sits beside the project as ../shared)")
    import_induce_execute(induce, execute, name="negation", metric="contains", pooled=True)
    return "negation"


async def test_the_quick_run_names_the_task(qwen: str) -> None:
    from engine.runner import Engine

    engine = Engine(load_config())
    results = {}
    try:
        for task in ("antonyms", import_negation()):
            summary = await engine.run(task, RunSettings(**QUICK))
            assert summary["status"] == "finished", summary
            cands = engine.history.candidates(summary["run_id"])
            results[task] = (summary["best_instruction"], [c["instruction"] for c in cands])
    finally:
        await engine.aclose()
    for task, (best, texts) in results.items():
        print(f"{task}: best {best!r}; candidates {texts}")  # shown with -s, for the record
        if task in NAMES_THE_TASK:
            assert NAMES_THE_TASK[task].search(best), (task, best, texts)
        junk = [t for t in texts if t == PLACEHOLDER_INSTRUCTION or is_echo(t)]
        assert len(junk) <= len(texts) // 2, (task, texts)
