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
GENERATOR_KNOBS: dict[str, dict[str, Any]] = {}


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


def make_run_generator(settings: GeneratorSettings) -> Any:
    """Load the generator the settings ask for (seconds; the engine keeps it warm across runs)."""
    import engine.generator as backends

    path, name = generator_spec(settings)
    knobs = GENERATOR_KNOBS.get(name or "", {})
    log.info("generator: %s (%s), backend %s, knobs %s", name or path, path, settings.backend, knobs)
    make = getattr(backends, "make_generator", None)
    if make is None:  # TEMPORARY until the llama.cpp backend lands
        gen = backends.Generator(path, settings.device, settings.max_new_tokens, settings.batch_size, **knobs)
    else:
        gen = make(path, settings.device, settings.max_new_tokens, settings.batch_size, backend=settings.backend,
                   **knobs)
    gen.catalog_name = name
    return gen
