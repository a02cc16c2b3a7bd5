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
