"""From the ``[generator]`` settings to a loaded generator: catalog names, the default model, per-model knobs.

Kept apart from the generator backends so that the choice of *which* model (the catalog, the default pair, what
a user wrote in the config) is made in one place, while the backends only know how to run a model file.

Per-model knobs exist because a soft prompt's effect depends on the model: the soft-token scale is measured in
units of each model's own embedding std, but the best multiple, the place of the soft tokens and the induction
prompt still differ between a 135M chat model and a coder model (numbers in BENCHMARKS.md).
"""

from __future__ import annotations

import logging
from typing import Any

from engine.config import GeneratorSettings

log = logging.getLogger(__name__)

#: Generator knobs per catalog model, chosen by measurement (bench/bench_generator.py, bench/quality.py).
#: Qwen2.5-Coder-1.5B: soft tokens at 96 embedding stds (not the general default 12). With 12 its greedy decoding
#: ignores most soft prompts (2-6 distinct instructions per run); at 96 the quality benchmark's mean test rose on
#: both task groups, one seed each: tune 0.41 -> 0.49, holdout 0.59 -> 0.68, never lower on a task of the holdout
#: group (BENCHMARKS.md, "Quality").
#: ``prompt_style`` and ``soft_position``: chosen per model from bench/bench_generator.py's style x position table
#: (BENCHMARKS.md, "The generator's prompt"; 15 tasks x 32 soft prompts each): the highest share of decodes that
#: name the task on the tune tasks, then (within 0.02) the fewest echoes of the prompt.
#: Qwen2.5-Coder-1.5B: direct/tail names the task in 0.43 of the tune tasks' decodes (paper/tail 0.29, paper/answer
#: 0.39) and never echoes (paper/tail 0.39). Qwen2.5-Coder-0.5B: asked directly it restates the question ("Infer
#: the instruction from the given examples."): on task 0.04, against 0.11-0.12 for the paper's framing, of which
#: the answer position echoes least (0.21 against 0.37). SmolLM2-135M: direct/tail 0.10 against 0.07.
GENERATOR_KNOBS: dict[str, dict[str, Any]] = {
    "smollm2-135m": {"prompt_style": "direct", "soft_position": "tail"},
    "qwen2.5-coder-0.5b": {"prompt_style": "paper", "soft_position": "answer"},
    "qwen2.5-coder-1.5b": {"soft_scale": 96.0, "prompt_style": "direct", "soft_position": "tail"},
}
#: The prompt style of a model outside the catalog (a folder, a .gguf path, a hub id): today's models are chat
#: models, and the direct question is what a chat model answers (the paper's framing was written for base models).
DEFAULT_PROMPT_STYLE = "direct"


def generator_spec(settings: GeneratorSettings) -> tuple[str, str | None]:
    """(the model to load as a path or hub id, its catalog name or None). Cheap: loads nothing.

    An empty ``model`` means the default generator when it is pulled, else the bundled SmolLM2; a catalog name that
    is not pulled yet raises the error that names the pull command.
    """
    from engine.models import catalog

    spec = (settings.model or "").strip() or catalog.effective_default("generator")
    name = catalog.get(spec).name if catalog.is_catalog_name(spec) else None
    resolved = catalog.resolve(spec)
    assert resolved is not None
    return resolved, name


def _catalog_name(settings: GeneratorSettings) -> str | None:
    """The catalog name the settings' generator goes by (None for a path or hub id). Needs nothing pulled."""
    from engine.models import catalog

    spec = (settings.model or "").strip() or catalog.effective_default("generator")
    return catalog.get(spec).name if catalog.is_catalog_name(spec) else None


def model_knobs(settings: GeneratorSettings, name: str | None) -> dict[str, Any]:
    """The generator knobs for the settings' model (catalog ``name``, None for a path or hub id): the catalog's
    measured ones, then the user's settings."""
    knobs = dict(GENERATOR_KNOBS.get(name or "", {}))
    if settings.soft_scale is not None:
        knobs["soft_scale"] = settings.soft_scale
    if settings.soft_position != "auto":
        knobs["soft_position"] = settings.soft_position
    if settings.dtype != "auto":
        knobs["dtype"] = settings.dtype
    return knobs


def default_prompt_style(settings: GeneratorSettings) -> str:
    """The prompt style a run with ``prompt_style = "auto"`` uses: the generator model's measured one. Cheap (loads
    nothing), so APE and the cost estimate use it without the generator."""
    return str(model_knobs(settings, _catalog_name(settings)).get("prompt_style", DEFAULT_PROMPT_STYLE))


def pick_backend(path: str, device: str, backend: str) -> str:
    """``auto``: llama.cpp for a .gguf file on the CPU (quantised weights, a fraction of the memory and time),
    transformers for Hugging Face folders, hub ids and CUDA."""
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if path.lower().endswith(".gguf") and not on_gpu and importlib.util.find_spec("llama_cpp") is not None:
        return "llama_cpp"
    return "transformers"


def make_generator(model: str | None, device: str = "auto", max_new_tokens: int = 32, batch_size: int | None = None, *,
                   backend: str = "auto", lazy: bool = False, **knobs: Any) -> Any:
    """A generator for a model path or hub id (None = the bundled SmolLM2) on the chosen backend."""
    from engine.generators.transformers import Generator
    from engine.models.catalog import default_model_path

    path = model or str(default_model_path())
    chosen = pick_backend(path, device, backend)
    if chosen == "llama_cpp":
        from engine.generators.llama_cpp import LlamaCppGenerator

        return LlamaCppGenerator(path, device, max_new_tokens, batch_size, lazy=lazy, **knobs)
    return Generator(path, device, max_new_tokens, batch_size, lazy=lazy, **knobs)


def make_run_generator(settings: GeneratorSettings, progress: Any = None) -> Any:
    """Load the generator the settings ask for (seconds; the engine keeps it warm across runs; a first load of a
    GGUF converts and caches its tokenizer and embeddings, about a minute). ``progress`` hears each stage of the
    load (:class:`engine.preparation.Preparation`)."""
    path, name = generator_spec(settings)
    knobs = model_knobs(settings, name)
    knobs.setdefault("prompt_style", DEFAULT_PROMPT_STYLE)
    log.info("generator: %s (%s), backend %s, knobs %s", name or path, path, settings.backend, knobs)
    gen = make_generator(path, settings.device, settings.max_new_tokens, settings.batch_size,
                         backend=settings.backend, lazy=True, **knobs)
    gen.progress = progress
    gen.load()
    gen.progress = None
    gen.catalog_name = name
    return gen
