"""Settings: a TOML file plus ``IZ_*`` environment overrides, validated in one place.

The file lives at :func:`engine.paths.config_file`. Any setting can be overridden from the environment as
``IZ_<SECTION>__<KEY>`` (for example ``IZ_RUN__N_DEV=10`` or ``IZ_GENERATOR__MODEL=/models/qwen``), and
``IZ_ENDPOINT`` picks the default endpoint profile. Every bad field is reported at once, one line each, naming
where it came from (file and key, or the variable), what was expected and what was found.

API keys never live here: an endpoint profile names the environment variable that holds its key
(``api_key_env``), and the key is read from the environment only when a request is made.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine import paths
from engine.errors import ConfigError

EMBEDDED = "embedded"
#: Hosts of an endpoint on this machine: such an endpoint costs nothing unless its profile sets prices.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: What front ends say when a run's money cannot be worked out.
PRICES_UNKNOWN = "unknown (set price_input/price_output in the profile)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GeneratorSettings(_Strict):
    """The local open-source model that turns soft prompts into instructions."""

    model: str | None = Field(
        default=None,
        description="A catalog name (`iz models list`), a Hugging Face model folder, a .gguf file, or a hub id; "
        "empty = the default generator if it is pulled, else the bundled SmolLM2-135M.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    backend: Literal["auto", "llama_cpp", "transformers"] = Field(
        default="auto", description="auto: llama.cpp for .gguf files on the CPU, transformers otherwise."
    )
    max_new_tokens: int = Field(default=32, ge=4, le=512)
    batch_size: int | None = Field(
        default=None, ge=1, le=256,
        description="Soft prompts decoded together in one call; empty = 8 on the CPU (batching gains 1.2-1.4x "
        "there), 32 on a GPU (a batch of 25 wrote 3.2-4x the instructions a second of a batch of 8 on an H200).",
    )
    soft_scale: float | None = Field(
        default=None, gt=0, le=1000,
        description="The soft tokens' size in units of the model's embedding std; empty = the measured default "
        "for the model (a larger scale makes different soft prompts write more different instructions).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="transformers backend only: auto = float32 on the CPU, half on a GPU."
    )
    soft_position: Literal["auto", "start", "user", "pairs", "tail", "answer"] = Field(
        default="auto",
        description="Where the soft tokens sit in the generator's prompt; auto = the measured default for the "
                    "model (bench/bench_generator.py).",
    )


class EndpointProfile(_Strict):
    """An OpenAI-compatible black box. ``base_url = "embedded"`` starts the bundled llama.cpp server."""

    base_url: str = EMBEDDED
    model: str = Field(
        default="auto",
        description="The model name sent to the endpoint. For the embedded server: a catalog name or a .gguf path; "
        "auto = the default black box if it is pulled, else the bundled SmolLM2-135M.",
    )
    api_key_env: str | None = Field(
        default=None, description="NAME of the environment variable that holds the API key (never the key)."
    )
    api: Literal["chat", "completions"] = "chat"
    max_tokens: int = Field(default=32, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    stop: list[str] = Field(default_factory=lambda: ["\n\n"])
    timeout_s: float = Field(default=60.0, gt=0)
    concurrency: int = Field(
        default=32, ge=1, le=256,
        description="The most requests in flight at once; shrunk automatically on HTTP 429 (halved, then grown "
        "back by one after enough successes).",
    )
    requests_per_minute: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)
    price_input: float | None = Field(
        default=None, ge=0, description="USD per million input (prompt) tokens; with price_output, runs show "
        "their cost and can be capped with --max-cost. Empty: unknown (a local endpoint is free).",
    )
    price_output: float | None = Field(default=None, ge=0, description="USD per million output (completion) tokens.")

    @property
    def embedded(self) -> bool:
        return self.base_url == EMBEDDED

    @property
    def local(self) -> bool:
        """The embedded server, or a server on this machine (127.0.0.1, localhost, ::1)."""
        if self.embedded:
            return True
        try:
            host = urlsplit(self.base_url).hostname
        except ValueError:
            return False
        return host in LOCAL_HOSTS

    @property
    def prices(self) -> tuple[float, float] | None:
        """USD per million (input, output) tokens: the profile's own prices when set (they win even for a local
        URL, which may be a proxy such as LiteLLM in front of a paid API), (0, 0) for a local endpoint, else None
        (unknown: set ``price_input`` and ``price_output`` in the profile)."""
        if self.price_input is not None and self.price_output is not None:
            return (self.price_input, self.price_output)
        if self.local:
            return (0.0, 0.0)
        return None

    @model_validator(mode="after")
    def _both_prices(self) -> EndpointProfile:
        if (self.price_input is None) != (self.price_output is None):
            raise ValueError("set both price_input and price_output (USD per million tokens), or neither")
        return self

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v != EMBEDDED and not v.startswith(("http://", "https://")):
            raise ValueError(f"'embedded' or an http(s) URL such as http://127.0.0.1:8000/v1, not {v!r}")
        return v.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.replace("_", "").isalnum() or v[0].isdigit() or v.startswith(("sk-", "sk_")):
            raise ValueError("the NAME of an environment variable (like OPENAI_API_KEY), not a key itself")
        return v

    def public(self) -> dict[str, Any]:
        """What may be stored or shown: everything here is safe (the key itself is never in a profile)."""
        return self.model_dump()


class RunSettings(_Strict):
    """Defaults for a run; every one of them can be changed per run."""

    method: str = Field(
        default="instructzero", pattern=r"^[a-z][a-z0-9_]*$",
        description="The method (engine.methods: instructzero, random, ape, ape_local, opro, manual, or a plug-in's).",
    )
    intrinsic_dim: int = Field(default=10, ge=1, le=1024)
    n_soft_tokens: int = Field(default=5, ge=1, le=64)
    projection: Literal["uniform", "normal"] = "uniform"
    soft_scale: float | None = Field(
        default=None, gt=0, le=1000,
        description="The soft tokens' size in embedding stds for this run; empty = the generator's setting.",
    )
    prompt_style: Literal["auto", "paper", "plain", "direct"] = Field(
        default="auto",
        description="How the generator (and APE's proposer) is asked for an instruction: 'paper' (the paper's "
                    "'I gave a friend ... The instruction was to'), 'direct' (a system turn and a question asking "
                    "for one imperative instruction that names the task; for chat models) or 'plain'; auto = the "
                    "measured default of the generator model (a run records the style it used).",
    )
    n_init: int = Field(default=25, ge=1)
    n_iterations: int = Field(default=5, ge=0)
    batch_size: int = Field(default=25, ge=1)
    n_dev: int = Field(default=20, ge=1)
    n_test: int = Field(default=100, ge=0)
    n_demos: int = Field(default=5, ge=0)
    seed: int = 0
    kernel: Literal["coupled", "coupled_residual", "matern"] = "coupled"
    optimizer: Literal["cmaes", "botorch"] = "cmaes"
    ape_temperature: float = Field(default=1.0, gt=0.0, le=2.0)
    resample_repeats: int = Field(
        default=2, ge=0, le=8,
        description="When a soft prompt decodes (greedily) to an instruction the run already has, decode it again "
                    "by sampling up to this many times and keep the first new text; 0 = greedy only (the paper).",
    )
    resample_temperature: float = Field(default=0.7, gt=0.0, le=2.0)
    allow_code: bool = Field(
        default=True,
        description="False refuses tasks that run their own code (metric = \"python\": the task folder's metric.py); "
                    "`iz run --no-code`. Either way a run of such a task says so and records the file's SHA-256.",
    )
    pool_size: int | None = Field(
        default=None, ge=2, le=5000,
        description="instinct: soft prompts decoded once per run into its pool of candidates; empty = 3 x the "
                    "evaluation budget, at most 200 (INSTINCT decoded 10,000 on a GPU).",
    )
    resample_echoes: bool = Field(
        default=False,
        description="Also decode again, by sampling, a soft prompt whose instruction only restates the generator's "
                    "prompt ('Write an output for every one of the inputs.'): it names no task. Needs "
                    "resample_repeats > 0 (the number of tries).",
    )
    surrogate: Literal["score", "graded"] = Field(
        default="score",
        description="What the BO's model learns from: each dev example's metric score (the paper), or 'graded': "
                    "that score or, when higher, the answer's word overlap with a right answer (F1), so runs whose "
                    "candidates all score 0 still tell the model which came closer.",
    )
    race: bool = Field(
        default=True,
        description="From the second batch on, score a candidate's dev examples in waves and stop once it cannot "
                    "beat the run's best so far (racing): it keeps the mean of what it answered, below the best.",
    )
    race_wave: int = Field(default=5, ge=1, description="Dev examples per wave when racing.")
    ape_endpoint: str | None = Field(
        default=None,
        description="The endpoint (profile name or URL) that proposes instructions for `ape`; empty = the run's own.",
    )
    budget_evaluations: int | None = Field(default=None, ge=1, description="default: n_init + n_iterations * batch")
    budget_calls: int | None = Field(default=None, ge=1)
    budget_tokens: int | None = Field(default=None, ge=1)
    budget_cost: float | None = Field(
        default=None, gt=0, description="Stop the run once it has spent this many USD (needs the endpoint's prices)."
    )

    @property
    def evaluations(self) -> int:
        """The evaluation budget: explicit, or what the Sobol start plus the BO iterations would spend."""
        if self.budget_evaluations is not None:
            return self.budget_evaluations
        return self.n_init + self.n_iterations * self.batch_size

    @staticmethod
    def iterations_for(evaluations: int, n_init: int, batch_size: int) -> int:
        """BO iterations needed to spend ``evaluations`` after ``n_init`` Sobol points (the last batch may be cut)."""
        rest = max(evaluations - n_init, 0)
        return -(-rest // batch_size) if batch_size else 0

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> RunSettings:
        """These settings (the configured defaults) with a run's own values on top, validated as one.

        The one place a run's settings are merged: the engine calls it for every front end, so a value left out
        of a request always means the configured default."""
        if not overrides:
            return self
        try:
            return RunSettings.model_validate({**self.model_dump(), **overrides})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid run settings: {problems}", "check the values passed to the run") from None


class Config(_Strict):
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    default_endpoint: str = EMBEDDED
    endpoints: dict[str, EndpointProfile] = Field(default_factory=dict)
    run: RunSettings = Field(default_factory=RunSettings)

    @model_validator(mode="after")
    def _embedded_profile(self) -> Config:
        if EMBEDDED not in self.endpoints:
            self.endpoints[EMBEDDED] = EndpointProfile()
        for name, prof in list(self.endpoints.items()):
            self.endpoints[name] = _concrete_model(prof)
        if self.default_endpoint not in self.endpoints:
            known = ", ".join(sorted(self.endpoints))
            raise ValueError(f"a profile defined under [endpoints] ({known}), not {self.default_endpoint!r}")
        return self

    def endpoint(self, name_or_url: str | None = None, model: str | None = None) -> tuple[str, EndpointProfile]:
        """Resolve a profile name or a bare URL (``--endpoint``) to a profile, with an optional model override."""
        name = name_or_url or self.default_endpoint
        if name in self.endpoints:
            prof = self.endpoints[name]
        elif name.startswith(("http://", "https://")):
            prof = EndpointProfile(base_url=name, model=model or "default")
        elif "://" in name:
            raise ConfigError(
                f"endpoint {name!r} is not an HTTP URL ({name.split('://')[0]}:// is not supported)",
                "give an http(s) URL of an OpenAI-compatible API, such as http://127.0.0.1:8000/v1, or a profile name",
            )
        else:
            known = ", ".join(sorted(self.endpoints))
            raise ConfigError(
                f"unknown endpoint {name!r}",
                f"use one of the profiles ({known}) or an http(s) URL, or add [endpoints.{name}] to "
                f"{paths.config_file()}",
            )
        if model:
            prof = _concrete_model(prof.model_copy(update={"model": model}))
        return name, prof


class StoredRun(NamedTuple):
    """A recorded run's settings and endpoint, as objects again."""

    settings: RunSettings
    instructions: list[str]
    endpoint_name: str
    profile: EndpointProfile

    def like(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``start_run`` parameters of a new run just like this one (``iz run --like``): the same full
        settings (seed included) with ``overrides`` on top, the same endpoint, model and instructions."""
        return {
            "settings": {**self.settings.model_dump(), **(overrides or {})},
            "endpoint": self.endpoint_name,
            "model": self.profile.model,
            "instructions": list(self.instructions),
        }


def revive(row: Mapping[str, Any]) -> StoredRun:
    """Rebuild a run's settings and endpoint profile from its history row — the one way resume, rerank and
    ``--like`` read what a run was started with (the row stores them as plain JSON: settings with the manual
    method's ``instructions``, the profile's public fields with its ``name``)."""
    stored = dict(row["settings"])
    instructions = list(stored.pop("instructions", None) or [])
    stored.setdefault("prompt_style", "paper")  # runs recorded before styles existed used the paper's framing
    ep = dict(row["endpoint"])
    name = ep.pop("name", EMBEDDED)
    return StoredRun(RunSettings.model_validate(stored), instructions, name, EndpointProfile.model_validate(ep))


def _concrete_model(prof: EndpointProfile) -> EndpointProfile:
    """An embedded profile's model "auto" made concrete (the default black box when pulled, else the bundled
    model), so a run records which model it really used; any other profile as it is."""
    if not (prof.embedded and prof.model == "auto"):
        return prof
    from engine.models.catalog import effective_default

    return prof.model_copy(update={"model": effective_default("blackbox")})


def _env_overrides(environ: dict[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Nest ``IZ_A__B=v`` into ``{"a": {"b": "v"}}``; remember which variable set each key."""
    tree: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for var, value in environ.items():
        if var == "IZ_ENDPOINT":
            tree["default_endpoint"] = value
            origin[("default_endpoint",)] = var
            continue
        if not var.startswith("IZ_") or "__" not in var:
            continue
        keys = tuple(k.lower() for k in var[3:].split("__"))
        node = tree
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                break
        else:
            node[keys[-1]] = _parse_env_value(value)
            origin[keys] = var
    return tree, origin


def _parse_env_value(value: str) -> Any:
    """Read a variable as TOML when it is a TOML value (numbers, lists, booleans), else as a plain string."""
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the file (if any) and the environment; raise one :class:`ConfigError` listing every bad field."""
    path = path or paths.config_file()
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text", "save the configuration file as UTF-8") from None
        except OSError as exc:
            what = "is a folder, not a file" if path.is_dir() else (exc.strerror or str(exc))
            raise ConfigError(f"cannot read the configuration file {path}: {what}",
                              "point IZ_CONFIG at a TOML file (or at a path with no file, for the defaults)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}", "fix the syntax at that line") from None
    env_tree, origin = _env_overrides(environ)
    merged = _merge(data, env_tree)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, origin), f"edit {path} or the IZ_* variable named above") from None


def _describe(exc: ValidationError, path: Path, origin: dict[tuple[str, ...], str]) -> str:
    lines = [f"invalid configuration ({len(exc.errors())} problem{'s' if len(exc.errors()) > 1 else ''}):"]
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc) or "(top level)"
        where = origin.get(loc) or f"{path} [{key}]"
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        if err["type"] == "extra_forbidden":
            hint = " (an API key never goes in the config: set api_key_env to the NAME of a variable)" if (
                "key" in key.lower()) else ""
            lines.append(f"  {where}: unknown setting {key!r}{hint}")
            continue
        found = err.get("input")
        shown = "<secret hidden>" if "key" in key.lower() else repr(found)
        lines.append(f"  {where}: {key}: expected {msg}; found {shown}")
    return "\n".join(lines)


def default_config_text() -> str:
    """A commented starting file for ``iz config init``."""
    return """# InstructZero configuration. Every setting can be overridden as IZ_<SECTION>__<KEY> in the environment.
default_endpoint = "embedded"

[generator]
# model = "qwen2.5-coder-1.5b"   # a catalog name (`iz models list`), a .gguf file, a HF folder or hub id;
#                                # default: the default generator when pulled, else the bundled SmolLM2-135M
device = "auto"
backend = "auto"                 # llama.cpp for .gguf files on the CPU, transformers otherwise
# soft_scale = 12                # soft-token size in embedding stds; default: measured per model
# soft_position = "auto"        # where the soft tokens go: start, user, pairs, tail, answer; auto: per model

[run]
intrinsic_dim = 10
n_soft_tokens = 5
n_init = 25
n_iterations = 5
batch_size = 25
n_dev = 20
n_test = 100
n_demos = 5
seed = 0
# prompt_style = "auto"         # paper ("I gave a friend ..."), direct (asks for the task), plain; auto: per model
# resample_repeats = 2          # a soft prompt that decodes to an instruction the run has: sample it again (0 = off)
# resample_temperature = 0.7
# resample_echoes = false       # also sample again an instruction that only restates the generator's prompt
# surrogate = "score"           # "graded": the BO also learns from partly right answers (word overlap)
# race = true                   # stop scoring a candidate once it cannot beat the run's best (saves calls)
# race_wave = 5                 # dev examples per wave when racing

# [endpoints.openai]
# base_url = "https://api.openai.com/v1"
# model = "gpt-4o-mini"
# api_key_env = "OPENAI_API_KEY"   # the NAME of the variable, never the key
# concurrency = 32                 # most requests in flight; halved on HTTP 429, grown back on success
# requests_per_minute = 500
# price_input = 0.15               # USD per million input tokens (runs show their cost; --max-cost caps it)
# price_output = 0.60              # USD per million output tokens
"""
