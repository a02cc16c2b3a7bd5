"""What a run was made with: the package version, the seed, the generator and the black box, by name and file hash.

Why: a history a user can trust says which models wrote and scored each candidate, and ``iz run --like RUN_ID`` can
only repeat a run exactly when that is known. Settings alone are not enough (a model name like "auto" or a path
means different files on different days), so model files are identified by size and SHA-256: the catalog's for a
catalog model (checked at pull time), else hashed once and remembered in the cache folder by path, size and mtime.

Cheap: nothing here loads a model, and a hash is computed at most once per file version.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import platform
from pathlib import Path
from typing import Any

from engine import paths
from engine.config import Config, EndpointProfile, RunSettings
from engine.methods import get as get_method

log = logging.getLogger(__name__)


def package_version() -> str:
    try:
        return importlib.metadata.version("instructzero")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_identity(path: Path) -> dict[str, Any]:
    """``{"file", "bytes", "sha256"}`` of a model file (or folder: its name only, a folder has no one hash)."""
    from engine.models import catalog

    path = path.expanduser()
    if not path.is_file():
        return {"file": str(path), "bytes": None, "sha256": None}
    stat = path.stat()
    for entry in catalog.CATALOG.values():
        if path.name == entry.file and stat.st_size == entry.bytes:
            return {"file": str(path), "bytes": stat.st_size, "sha256": entry.sha256, "catalog": entry.name}
    memo = paths.cache_dir() / "file-hashes.json"
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text(encoding="utf-8")) if memo.exists() else {}
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = _hash_file(path)
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text(json.dumps(known), encoding="utf-8")
        except OSError as exc:  # a read-only cache costs a re-hash next time, nothing else
            log.info("cannot remember the hash of %s: %s", path, exc)
    return {"file": str(path), "bytes": stat.st_size, "sha256": known[key]}


def generator_identity(config: Config) -> dict[str, Any]:
    """The generator a run of this engine would load, without loading it."""
    from engine.generator_setup import GENERATOR_KNOBS, generator_spec

    path, name = generator_spec(config.generator)
    ident = file_identity(Path(path)) if Path(path).expanduser().exists() else {"file": path, "sha256": None}
    return {"name": name or path, **ident, "settings": config.generator.model_dump(),
            "knobs": GENERATOR_KNOBS.get(name or "", {})}


def blackbox_identity(endpoint_name: str, profile: EndpointProfile) -> dict[str, Any]:
    """The black box by profile; for the embedded server also the model file it serves."""
    out: dict[str, Any] = {"endpoint": endpoint_name, "base_url": profile.base_url, "model": profile.model}
    if profile.embedded:
        from engine.models import catalog

        spec = catalog.resolve(profile.model) or str(catalog.default_model_path())
        out.update(file_identity(Path(spec)))
    return out


def run_provenance(config: Config, settings: RunSettings, endpoint_name: str, profile: EndpointProfile) -> dict[str, Any]:
    """Everything needed to say what made a run, and to repeat it."""
    method = get_method(settings.method)
    return {
        "version": package_version(),
        "python": platform.python_version(),
        "seed": settings.seed,
        "generator": generator_identity(config) if method.needs_generator else None,
        "blackbox": blackbox_identity(endpoint_name, profile),
        "proposer": blackbox_identity(*config.endpoint(settings.ape_endpoint))
        if method.pays_for_proposals and settings.ape_endpoint else None,
    }


__all__ = ["blackbox_identity", "file_identity", "generator_identity", "package_version", "run_provenance"]
