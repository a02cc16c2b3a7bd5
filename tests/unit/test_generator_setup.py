"""From `[generator]` settings to the generator's knobs (engine/generator_setup.py), without loading a model.

The knobs decide what a run's candidates look like, so the order of precedence matters: the measured per-model
defaults (GENERATOR_KNOBS), then what the user set. ``make_generator`` is replaced by a recorder; the real
construction is covered by the integration tests of each backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import generator_setup
from engine.config import GeneratorSettings
from engine.errors import GeneratorError
from engine.generators.transformers import Generator


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    class Made:
        catalog_name: str | None = None
        progress: Any = None
        loaded = False

        def load(self) -> None:
            self.loaded = True

    def fake_make(model: str | None, device: str, max_new_tokens: int, batch_size: int, *, backend: str,
                  **knobs: Any) -> Made:
        calls.append({"model": model, "device": device, "backend": backend, **knobs})
        return Made()

    monkeypatch.setattr(generator_setup, "make_generator", fake_make)
    return calls


def test_user_settings_override_the_per_model_knobs(made: list[dict[str, Any]], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setitem(generator_setup.GENERATOR_KNOBS, "", {"soft_scale": 3.0, "soft_position": "tail"})
    generator_setup.make_run_generator(GeneratorSettings(model=str(model)))
    assert made[-1]["soft_scale"] == 3.0 and "dtype" not in made[-1]
    gen = generator_setup.make_run_generator(GeneratorSettings(model=str(model), soft_scale=40, dtype="bfloat16"))
    assert made[-1]["soft_scale"] == 40 and made[-1]["dtype"] == "bfloat16"
    assert made[-1]["soft_position"] == "tail"  # a knob the user did not set keeps the measured value
    assert generator_setup.GENERATOR_KNOBS[""] == {"soft_scale": 3.0, "soft_position": "tail"}  # not mutated
    assert gen.catalog_name is None  # a path, not a catalog name
    assert made[-1]["lazy"] is True and gen.loaded and gen.progress is None  # loaded once progress was attached
    generator_setup.make_run_generator(GeneratorSettings(model=str(model), soft_position="answer"))
    assert made[-1]["soft_position"] == "answer"
    assert made[-1]["prompt_style"] == generator_setup.DEFAULT_PROMPT_STYLE  # a model outside the catalog


def test_the_prompt_style_is_the_models_measured_one_without_loading_anything(tmp_path: Path) -> None:
    for name, knobs in generator_setup.GENERATOR_KNOBS.items():
        if name in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"):
            assert generator_setup.default_prompt_style(GeneratorSettings(model=name)) == knobs["prompt_style"]
    path = tmp_path / "other.gguf"
    assert generator_setup.default_prompt_style(GeneratorSettings(model=str(path))) == "direct"


def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        GeneratorSettings(soft_scale=0)
    with pytest.raises(ValueError):
        GeneratorSettings(dtype="int4")  # type: ignore[arg-type]


@pytest.mark.parametrize(("knob", "value"), [("dtype", "int8"), ("prompt_style", "poem"), ("device", "tpu")])
def test_unknown_knob_values_are_clear_errors(knob: str, value: str) -> None:
    with pytest.raises(GeneratorError, match="Unknown"):
        Generator(None, lazy=True, **{knob: value})
