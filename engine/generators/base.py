"""What the two generator backends share: locating the model, the knobs, the run's projection matrix, the prompt
pieces around the soft tokens and the cleaning of a raw decode; and :class:`InstructionWriter`, the interface the
engine uses (it never needs to know which backend it holds).

The backends are siblings: :mod:`engine.generators.transformers` (Hugging Face models, any device) and
:mod:`engine.generators.llama_cpp` (GGUF files through llama.cpp, the CPU default). Both write the same instructions
from the same z, demos and projection, because the prompt text and its cleaning live in :mod:`engine.prompts` and the
projection here.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from engine.errors import GeneratorError
from engine.models.catalog import default_model_path
from engine.prompts import (
    PLACEHOLDER_INSTRUCTION,
    PROMPT_STYLES,
    SOFT_POSITIONS,
    Demo,
    SoftPosition,
    clean_instruction,
    split_at_soft_slot,
)

log = logging.getLogger("engine.generator")


class InstructionWriter(Protocol):
    """What the engine and the methods use of a generator, whichever backend it is.

    Shapes: ``Z`` is (n, d) in [-1, 1]; ``projection`` is (d, n_tokens * hidden_size); ``embed`` returns
    (n, hidden_size), L2-normalised rows."""

    model_name: str
    prompt_style: str
    progress: Callable[..., None] | None

    def load(self) -> Any: ...
    def close(self) -> None: ...
    @property
    def hidden_size(self) -> int: ...
    def projection(self, d: int, n_tokens: int, seed: int, kind: str = "uniform",
                   scale: float | None = None) -> torch.Tensor: ...
    def instructions(self, Z: Any, demos: Sequence[Demo], projection: torch.Tensor, n_tokens: int, *,
                     sample: tuple[float, int] | None = None, style: str | None = None) -> list[str]: ...
    def sample(self, demos: Sequence[Demo], n: int, temperature: float, seed: int,
               style: str | None = None) -> list[str]: ...
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


# --------------------------------------------------------------------------------------------------------------
# Locating the model


def _looks_like_path(spec: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else that names the file system is a path."""
    return (
        spec.startswith(("/", "./", "../", "~", "\\"))
        or spec.endswith(".gguf")
        or spec.count("/") > 1
        or (len(spec) > 1 and spec[1] == ":")
    )


def _resolve(model: str | None) -> tuple[str, str | None, str]:
    """(what to pass to from_pretrained, gguf file name or None, a display name). Cheap: loads nothing."""
    if model is None or not str(model).strip():
        path = default_model_path()
        return str(path.parent), path.name, path.stem
    spec = str(model).strip()
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise GeneratorError(
                f"Generator model {spec} is a file but not a .gguf file.",
                "Point [generator] model at a .gguf file or at a Hugging Face model folder (with config.json).",
            )
        return str(path.parent), path.name, path.stem
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path), None, path.name
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(path), ggufs[0].name, ggufs[0].stem
        what = f"{len(ggufs)} .gguf files" if ggufs else "no config.json and no .gguf file"
        raise GeneratorError(
            f"Generator model folder {spec} has {what}.",
            "Point [generator] model at a Hugging Face model folder with config.json, or at one .gguf file.",
        )
    if _looks_like_path(spec):
        raise GeneratorError(
            f"Generator model path {spec} does not exist.",
            "Check the path in [generator] model (or IZ_GENERATOR__MODEL), or leave it empty for the bundled model.",
        )
    return spec, None, spec  # a hub id


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide the loading progress bars: the engine's stdio is for its protocol and its log, not for tqdm.

    transformers' own bars obey ``disable_progress_bar``; the GGUF de-quantisation bar is a bare ``tqdm.auto``
    call, so that module's ``tqdm`` is swapped for a disabled one while loading.
    """
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_utils: Any = None
    original: Any = None
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils

        original = getattr(gguf_utils, "tqdm", None)
        if original is not None:
            gguf_utils.tqdm = functools.partial(original, disable=True)
    except ImportError:  # no gguf support installed: loading a .gguf will fail with its own clear error
        gguf_utils = None
    try:
        yield
    finally:
        if gguf_utils is not None and original is not None:
            gguf_utils.tqdm = original
        if was:
            hf_logging.enable_progress_bar()


def default_batch_size(device: str) -> int:
    """Soft prompts decoded together when the settings leave it open: on a CPU batching gains little (1.2-1.4x
    instructions a second over one at a time, BENCHMARKS.md (c)) and costs memory, so 8; on a GPU the batch is
    nearly free (an H200 wrote 3.2-4x the instructions a second with batches of 25 than of 8,
    ``bench/bench_generator_gpu.py``), so 32: a whole BO batch (25 by default) in one call."""
    return 32 if device.startswith("cuda") else 8


class GeneratorBase:
    """A causal LM that writes instructions from soft prompts (InstructZero) or by sampling (APE).

    The constructor checks that the model can be found (a wrong path fails at once, without loading anything)
    and then loads it, unless ``lazy=True``, in which case the first use (or :meth:`load`) does. Tokenizer and
    model are kept on the instance: loading takes seconds, every call after that reuses them.

    Tuning knobs (keyword-only; the defaults are what ``bench/bench_generator_knobs.py`` found best for SmolLM2-135M):

    * ``soft_position``: where the soft tokens go. ``"tail"`` (default): at the end of the user turn, after the
      demos and right before its closing "The instruction was to". Also ``"start"`` (before everything, as the
      paper's code did), ``"user"`` (start of the user turn), ``"pairs"`` (before the first demo) and
      ``"answer"`` (inside the answer, before the prefilled "The instruction was to").
    * ``soft_scale``: the soft tokens' size in units of the token-embedding std (default 12, measured; see
      :meth:`projection`).
    * ``no_repeat_ngram_size``: greedy decoding may not repeat a 3-gram of its own output, which stops the small
      model's loops ("The instruction was to "The instruction was to ..."). 0 turns it off.
    * ``prefix_cache``: reuse the keys/values of the prompt part before the soft tokens (same for every z).
    * ``dtype`` (transformers backend): ``auto`` is float32 on the CPU, half precision on a GPU.
    * ``prompt_style``: how the model is asked (:data:`engine.prompts.PROMPT_STYLES`): ``paper`` (the paper's
      "I gave a friend an instruction and five inputs ... The instruction was to"), ``direct`` (a system turn and
      a question asking for one imperative instruction that names the task; chat models name the task far more
      often this way) or ``plain``. A run passes its own style to :meth:`instructions` and :meth:`sample`; this
      knob is the default (per catalog model: :data:`engine.generator_setup.GENERATOR_KNOBS`).
    * ``system_prompt``: a system turn for chat models (None = the template's default). Kept for experiments:
      APE's system turn made Qwen2.5-Coder-1.5B write "Write an output for every input." for most z.
    """

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        max_new_tokens: int = 32,
        batch_size: int | None = None,
        *,
        lazy: bool = False,
        soft_position: SoftPosition = "tail",
        soft_scale: float = 12.0,
        no_repeat_ngram_size: int = 3,
        prefix_cache: bool = True,
        system_prompt: str | None = None,
        dtype: str = "auto",
        prompt_style: str = "paper",
    ) -> None:
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise GeneratorError(f"Unknown generator device {device!r}.", "Use auto, cpu or cuda.")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise GeneratorError(
                "The generator device is cuda but this machine has no usable CUDA GPU.",
                "Set [generator] device = auto or cpu.",
            )
        if soft_position not in SOFT_POSITIONS:
            raise ValueError(f"soft_position must be one of {', '.join(SOFT_POSITIONS)}, not {soft_position!r}")
        self._source, self._gguf_file, self.model_name = _resolve(model)
        self.device: str = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = max(1, int(batch_size)) if batch_size is not None else default_batch_size(self.device)
        self.soft_position: SoftPosition = soft_position
        self.soft_scale = float(soft_scale)
        self.no_repeat_ngram_size = int(no_repeat_ngram_size)
        self.prefix_cache = prefix_cache
        self.system_prompt = system_prompt
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise GeneratorError(f"Unknown generator dtype {dtype!r}.", "Use auto, float32, bfloat16 or float16.")
        self.dtype = dtype
        if prompt_style not in PROMPT_STYLES:
            raise GeneratorError(f"Unknown prompt style {prompt_style!r}.", f"Use {', '.join(PROMPT_STYLES)}.")
        self.prompt_style = prompt_style
        self._lock = threading.RLock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._embed_std: float | None = None
        self._stop: Any = None
        self._prompt_cache: dict[tuple[Any, ...], Any] = {}
        #: Told each stage of :meth:`load` (``progress(stage, step, steps, fraction)``): an
        #: :class:`engine.preparation.Preparation` while the engine shows a first load's progress.
        self.progress: Callable[..., None] | None = None
        if not lazy:
            self.load()

    def _report(self, stage: str, step: int, steps: int, fraction: float | None = None) -> None:
        if self.progress is not None:
            self.progress(stage, step, steps, fraction)

    @property
    def model(self) -> Any:
        return self.load()._model

    @property
    def tokenizer(self) -> Any:
        return self.load()._tokenizer

    @property
    def embed_std(self) -> float:
        """The std of the model's token-embedding entries (SmolLM2-135M: about 0.136)."""
        self.load()
        assert self._embed_std is not None
        return self._embed_std

    def projection(self, d: int, n_tokens: int, seed: int, kind: str = "uniform",
                   scale: float | None = None) -> torch.Tensor:
        """The run's fixed random matrix ``A`` (shape ``[d, n_tokens * hidden_size]``, float32, CPU).

        ``soft = z @ A`` then reshapes to ``[n_tokens, hidden_size]``. Entries are drawn from a seeded CPU
        ``torch.Generator`` (the same seed gives the same matrix on any machine): ``"uniform"`` is uniform(-1, 1)
        as in the paper, ``"normal"`` a standard normal.

        Scaling, and why. The unit is the model's own token-embedding std (SmolLM2-135M: 0.136; other models
        differ by an order of magnitude), so one setting means the same on any model: ``A`` is multiplied by
        ``soft_scale * embed_std / (std(a) * sqrt(d / 3))``, where ``d / 3`` is ``E|z|^2`` for uniform z and
        ``std(a)`` the std of one raw entry. A typical soft token then has entries of std
        ``soft_scale * embed_std``, whatever d and the kind.

        The factor is measured, not assumed (``bench/bench_generator_knobs.py``; 3 tasks x 50 z, two seeds): soft
        tokens the size of real ones (``soft_scale`` 1) gave only 69-74 distinct instructions of 150, and the
        most junk; 8 gave 87-101, 12 gave 99-125 with almost no junk, 16 gave 103-126 with more junk, 24 fell
        back to 110. (The paper's raw uniform(-1, 1) matrix would be about 7.8 here.) Large soft tokens do not
        drown the prompt because the model normalises every token (RMSNorm) before attention: a big vector is
        not louder there, it only keeps its own random direction through the layers' residual updates, so
        different z stay distinguishable while the demos still shape the text. Hence the default 12.

        ``scale`` overrides ``soft_scale`` for this matrix (a run's own setting, so one warm generator serves
        runs with different scales).
        """
        if d < 1 or n_tokens < 1:
            raise ValueError("projection needs d >= 1 and n_tokens >= 1")
        if kind not in ("uniform", "normal"):
            raise ValueError(f"projection kind must be uniform or normal, not {kind!r}")
        rng = torch.Generator(device="cpu").manual_seed(int(seed))
        shape = (d, n_tokens * self.hidden_size)
        if kind == "uniform":
            raw = torch.rand(shape, generator=rng, dtype=torch.float32) * 2.0 - 1.0
            entry_std = 1.0 / math.sqrt(3.0)
        else:
            raw = torch.randn(shape, generator=rng, dtype=torch.float32)
            entry_std = 1.0
        factor = (self.soft_scale if scale is None else float(scale)) * self.embed_std
        return raw * (factor / (entry_std * math.sqrt(d / 3.0)))

    def _prompt_pieces(self, demos: Sequence[Demo], style: str | None = None) -> tuple[list[int], list[int]]:
        """Token ids before and after the place the soft tokens go (text from
        :func:`engine.prompts.split_at_soft_slot`, through the model's chat template when it has one)."""
        tok = self.tokenizer
        has_chat = bool(getattr(tok, "chat_template", None))

        def chat_template(messages: list[dict[str, str]]) -> str:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

        before, after = split_at_soft_slot(
            demos,
            soft_position=self.soft_position,
            style=style or self.prompt_style,
            chat_template=chat_template if has_chat else None,
            system_prompt=self.system_prompt,
        )
        # The chat template already writes any special tokens it wants; a model without one gets its usual BOS
        # (first, even before soft tokens placed at the start).
        before_ids = tok(before, add_special_tokens=False)["input_ids"] if before else []
        after_ids = tok(after, add_special_tokens=False)["input_ids"]
        bos = tok.bos_token_id
        if not has_chat and bos is not None and getattr(tok, "add_bos_token", True):
            before_ids = [bos, *before_ids]
        return before_ids, after_ids

    @staticmethod
    def _check_style(style: str | None) -> None:
        if style is not None and style not in PROMPT_STYLES:
            raise GeneratorError(f"Unknown prompt style {style!r}.", f"Use {', '.join(PROMPT_STYLES)}.")

    def _finish(self, raw: str) -> str:
        """Clean one raw output; never return an empty instruction.

        When cleaning leaves nothing (the model wrote nothing, one word, or only an echo of the prompt), the
        instruction is :data:`PLACEHOLDER_INSTRUCTION` and the raw text goes to the log. Many z then share the
        placeholder, and the runner's dedup pays the black box for it once.
        """
        text = clean_instruction(raw)
        if text:
            return text
        log.warning("generator wrote no usable instruction (raw %r); using the placeholder", raw[:200])
        return PLACEHOLDER_INSTRUCTION

    @staticmethod
    def _check_sample(demos: Sequence[Demo], temperature: float) -> None:
        """What both backends' ``sample`` refuse."""
        if temperature <= 0:
            raise ValueError("sample() needs temperature > 0 (use instructions() for greedy decoding)")
        if not demos:
            raise ValueError("sample() needs at least one demo")

    def _soft_inputs(
        self, Z: Any, demos: Sequence[Demo], projection: torch.Tensor, n_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``Z`` as a 2-D float tensor and the projection, checked against each other and the model (both backends
        decode the same soft prompts, so they share the checks)."""
        Zt = torch.as_tensor(Z, dtype=torch.float32).detach().cpu()
        if Zt.ndim == 1:
            Zt = Zt.unsqueeze(0)
        A = torch.as_tensor(projection, dtype=torch.float32).cpu()
        if Zt.ndim != 2 or A.ndim != 2 or Zt.shape[1] != A.shape[0]:
            raise ValueError(f"Z {tuple(Zt.shape)} does not fit the projection {tuple(A.shape)}")
        if A.shape[1] != n_tokens * self.hidden_size:
            raise ValueError(
                f"projection has {A.shape[1]} columns, expected n_tokens * hidden_size = {n_tokens * self.hidden_size}"
            )
        if not demos:
            raise ValueError("instructions() needs at least one demo")
        return Zt, A

    def close(self) -> None:
        """Free the model (a backend that holds native memory frees it here)."""
