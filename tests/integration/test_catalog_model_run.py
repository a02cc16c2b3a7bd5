"""A real InstructZero run whose generator is a pulled catalog model (Qwen2.5-Coder-0.5B), end to end.

The test set-up (``bash .ci/bootstrap test``) pulls ``qwen2.5-coder-0.5b`` into the user's models folder once;
this test finds it there (the folder as it was before the sandbox moved IZ_HOME), names it by its catalog name as
a user would, and runs a short InstructZero run through the engine core against the embedded llama.cpp server.
The black box stays the bundled SmolLM2 so the test is quick; the point is the catalog name -> file -> backend path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import paths
from engine.config import RunSettings, load_config
from engine.models import catalog

pytestmark = pytest.mark.integration

#: Read at import, before the per-test sandbox points IZ_HOME (and so the models folder) at a temporary folder.
USER_MODELS = Path(os.environ.get("IZ_MODELS") or paths.models_dir())
#: The generator's cache (the dequantised embedding matrix, the converted tokenizer) is derived from the file
#: alone; sharing the user's saves rebuilding half a GB on every run of the suite.
USER_CACHE = Path(os.environ.get("IZ_CACHE") or paths.cache_dir())
QWEN = "qwen2.5-coder-0.5b"


@pytest.fixture
def qwen_models(monkeypatch: pytest.MonkeyPatch) -> Path:
    entry = catalog.get(QWEN)
    if not (USER_MODELS / entry.file).is_file():
        pytest.skip(f"{QWEN} is not pulled into {USER_MODELS}: run `iz models pull {QWEN}` (the test set-up does)")
    monkeypatch.setenv("IZ_MODELS", str(USER_MODELS))
    monkeypatch.setenv("IZ_CACHE", str(USER_CACHE))
    return USER_MODELS


async def test_instructzero_run_with_a_catalog_generator(qwen_models: Path, embedded_server: object,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.runner import Engine

    monkeypatch.setenv("IZ_GENERATOR__MODEL", QWEN)
    monkeypatch.setenv("IZ_ENDPOINTS__EMBEDDED__MODEL", "smollm2-135m")
    config = load_config()
    assert config.generator.model == QWEN
    engine = Engine(config)
    try:
        settings = RunSettings(method="instructzero", budget_evaluations=4, n_init=2, batch_size=2,
                               n_iterations=1, n_dev=3, n_test=3, seed=0)
        summary = await engine.run("antonyms", settings)
        gen = await engine.generator()
    finally:
        await engine.aclose()

    assert summary["status"] == "finished", summary
    assert summary["evaluations"] >= 1 and summary["test_score"] is not None
    # The catalog name reached the generator as the pulled file, through the llama.cpp backend for a GGUF on CPU.
    assert getattr(gen, "catalog_name", None) == QWEN
    assert "qwen" in gen.model_name.lower()
    candidates = engine.history.candidates(summary["run_id"])
    assert candidates and all(c["instruction"].strip() for c in candidates)
    assert all(c["z"] is not None and len(c["z"]) == settings.intrinsic_dim for c in candidates)
