"""Configuration: defaults, the TOML file, IZ_* overrides, and one clear message per bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import EMBEDDED, load_config
from engine.errors import ConfigError


def test_defaults_are_the_papers(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "none.toml", environ={})
    r = cfg.run
    assert (r.intrinsic_dim, r.n_soft_tokens, r.n_init, r.n_iterations, r.batch_size) == (10, 5, 25, 5, 25)
    assert (r.n_dev, r.n_test, r.n_demos, r.seed) == (20, 100, 5, 0)
    assert r.evaluations == 150
    assert cfg.default_endpoint == EMBEDDED
    assert cfg.endpoints[EMBEDDED].embedded
    assert cfg.generator.model is None


def test_file_and_environment_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[run]\nn_dev = 7\n[endpoints.local]\nbase_url = "http://127.0.0.1:8080/v1"\nmodel = "qwen"\n'
                 'api_key_env = "LOCAL_KEY"\n')
    cfg = load_config(f, environ={"IZ_RUN__SEED": "3", "IZ_ENDPOINT": "local", "IZ_GENERATOR__DEVICE": "cpu"})
    assert cfg.run.n_dev == 7 and cfg.run.seed == 3
    assert cfg.default_endpoint == "local"
    name, prof = cfg.endpoint()
    assert name == "local" and prof.model == "qwen" and prof.api_key_env == "LOCAL_KEY"
    assert cfg.generator.device == "cpu"
    _, url_prof = cfg.endpoint("http://localhost:1234/v1", model="llama")
    assert url_prof.base_url == "http://localhost:1234/v1" and url_prof.model == "llama"


def test_every_bad_field_is_reported_with_where_expected_and_found(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[run]\nn_dev = "many"\nintrinsic_dim = 0\n[endpoints.x]\nbase_url = "ftp://nope"\n')
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={"IZ_RUN__SEED": "abc"})
    msg = str(err.value)
    assert "4 problems" in msg
    assert f"{f} [run.n_dev]" in msg and "'many'" in msg and "integer" in msg
    assert "run.intrinsic_dim" in msg and "greater than or equal to 1" in msg
    assert "endpoints.x.base_url" in msg and "ftp://nope" in msg
    assert "IZ_RUN__SEED" in msg and "'abc'" in msg


def test_api_key_in_the_config_is_refused_without_echoing_it(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[endpoints.openai]\nbase_url = "https://api.openai.com/v1"\nmodel = "gpt"\n'
                 'api_key = "sk-SECRET-123"\n')
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert "api_key_env" in str(err.value)
    assert "sk-SECRET-123" not in str(err.value)
    f.write_text('[endpoints.openai]\nbase_url = "https://api.openai.com/v1"\nmodel = "gpt"\n'
                 'api_key_env = "sk-SECRET-123"\n')
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert "NAME of an environment variable" in str(err.value)
    assert "sk-SECRET-123" not in str(err.value)


def test_bad_toml_and_unknown_endpoint(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[run\nn_dev = 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert "invalid TOML" in str(err.value) and str(f) in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "none.toml", environ={}).endpoint("nowhere")
    assert "unknown endpoint 'nowhere'" in str(err.value) and "embedded" in str(err.value)


# -- "auto": the embedded profiles' model ------------------------------------------------------------------------
# An embedded profile's model defaults to "auto", which the config turns into a concrete catalog name when it is
# validated (so a run records the model it really used): the default black box when its file is on this machine,
# else the bundled SmolLM2. These tests fake a pulled model with a sparse file of the catalog size (the catalog
# trusts the size; hashing is the pull's job), so nothing large is written.


def _models_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("IZ_MODELS", str(folder))
    return folder


def _fake_pulled(folder: Path, name: str, size: int | None = None) -> Path:
    from engine.models import catalog

    entry = catalog.get(name)
    target = folder / entry.file
    with target.open("wb") as fh:
        fh.truncate(entry.bytes if size is None else size)
    return target


def test_auto_is_the_bundled_model_when_nothing_is_pulled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.config import EndpointProfile
    from engine.models import catalog

    _models_folder(tmp_path, monkeypatch)
    assert EndpointProfile().model == "auto"  # the field's default, before a Config resolves it
    cfg = load_config(tmp_path / "none.toml", environ={})
    assert cfg.endpoints[EMBEDDED].model == catalog.BUNDLED_DEFAULT == "smollm2-135m"
    assert cfg.endpoint()[1].model == "smollm2-135m"
    assert catalog.DEFAULT_BLACKBOX != catalog.BUNDLED_DEFAULT  # else the next test would prove nothing


def test_auto_is_the_default_black_box_once_it_is_pulled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.models import catalog

    folder = _models_folder(tmp_path, monkeypatch)
    f = tmp_path / "c.toml"
    f.write_text('[endpoints.judge]\nbase_url = "embedded"\n'  # model omitted: "auto"
                 '[endpoints.local]\nbase_url = "http://127.0.0.1:8080/v1"\nmodel = "auto"\n')
    target = _fake_pulled(folder, catalog.DEFAULT_BLACKBOX)
    cfg = load_config(f, environ={})
    assert cfg.endpoints[EMBEDDED].model == catalog.DEFAULT_BLACKBOX == "qwen2.5-coder-1.5b"
    assert cfg.endpoints["judge"].model == catalog.DEFAULT_BLACKBOX  # every embedded profile, not just the default
    assert cfg.endpoints["local"].model == "auto"  # a remote endpoint's model is sent as written
    # A file cut short (a copy that stopped early) is not the model: back to the bundled one.
    with target.open("r+b") as fh:
        fh.truncate(catalog.get(catalog.DEFAULT_BLACKBOX).bytes - 1)
    assert load_config(f, environ={}).endpoints[EMBEDDED].model == catalog.BUNDLED_DEFAULT


def test_an_explicit_embedded_model_is_kept_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.models import catalog

    folder = _models_folder(tmp_path, monkeypatch)
    _fake_pulled(folder, catalog.DEFAULT_BLACKBOX)  # "auto" would become this: an explicit name must not
    f = tmp_path / "c.toml"
    f.write_text('[endpoints.embedded]\nmodel = "qwen2.5-coder-0.5b"\n'  # a catalog name that is not pulled
                 '[endpoints.small]\nmodel = "SmolLM2-135M-Instruct"\n'  # an alias, in another case
                 '[endpoints.file]\nmodel = "/models/mine.gguf"\n')
    cfg = load_config(f, environ={})
    assert cfg.endpoints[EMBEDDED].model == "qwen2.5-coder-0.5b"
    assert cfg.endpoints["small"].model == "SmolLM2-135M-Instruct"
    assert cfg.endpoints["file"].model == "/models/mine.gguf"
    assert all(p.embedded for p in cfg.endpoints.values())
    # The same folder with "auto" gives the pulled default, so keeping the names above was the config's choice.
    assert load_config(tmp_path / "none.toml", environ={}).endpoints[EMBEDDED].model == catalog.DEFAULT_BLACKBOX
