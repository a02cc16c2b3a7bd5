"""Provenance records (engine/provenance.py): model files are identified by hash, cheaply, and runs keep them."""

from __future__ import annotations

from pathlib import Path

import pytest
from unit_fakes import FakeEndpoint, engine_with_fakes

from engine import provenance
from engine.config import RunSettings
from engine.models import catalog


def test_a_catalog_file_takes_the_catalog_hash_without_reading_it(monkeypatch: pytest.MonkeyPatch) -> None:
    path = catalog.default_model_path()
    monkeypatch.setattr(provenance, "_hash_file", lambda p: pytest.fail("a catalog file must not be hashed"))
    ident = provenance.file_identity(path)
    entry = catalog.get("smollm2-135m")
    assert ident["sha256"] == entry.sha256 and ident["bytes"] == entry.bytes and ident["catalog"] == entry.name


def test_another_file_is_hashed_once_per_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "my.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 100)
    calls: list[Path] = []
    real = provenance._hash_file
    monkeypatch.setattr(provenance, "_hash_file", lambda p: calls.append(p) or real(p))
    first = provenance.file_identity(model)
    assert provenance.file_identity(model) == first and len(calls) == 1, "remembered by path, size and mtime"
    assert first["sha256"] == real(model) and first["bytes"] == 104
    model.write_bytes(b"GGUF" + b"\1" * 200)
    assert provenance.file_identity(model)["sha256"] != first["sha256"] and len(calls) == 2


def test_a_run_records_what_made_it(fake: FakeEndpoint, tmp_path: Path) -> None:
    engine = engine_with_fakes(fake, tmp_path)
    manual = engine.create_run("larger_animal", {"method": "manual", "seed": 9}, instructions=["A."])
    made = engine.history.run(manual)["provenance"]
    assert made["seed"] == 9 and made["version"] == provenance.package_version()
    assert made["generator"] is None, "manual never uses the local generator"
    assert made["blackbox"] == {"endpoint": "fake", "base_url": fake.url, "model": "fake-model"}

    iz = engine.create_run("larger_animal", RunSettings(method="instructzero"))
    gen = engine.history.run(iz)["provenance"]["generator"]
    default = catalog.effective_default("generator")
    assert gen["name"] == default and gen["sha256"] == catalog.get(default).sha256
    assert gen["settings"] == engine.config.generator.model_dump()
