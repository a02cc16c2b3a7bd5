"""The llama.cpp generator backend: soft prompts run through the quantised GGUF itself.

Why: through transformers a GGUF is dequantised to float32 (Qwen2.5-Coder-1.5B: about 9 GB and seconds per
instruction on 2 cores). llama.cpp runs the quantised weights and accepts input *embeddings* in a batch
(``llama_batch_init(n, n_embd, 1)`` with ``embd`` filled), so the soft tokens can be spliced between real token
embeddings exactly as with ``inputs_embeds`` in transformers.

What is shared with the transformers backend (both subclass :class:`engine.generators.base.GeneratorBase`): the prompt
(the model's chat template through the Hugging Face tokenizer read from the same GGUF, so token ids are the same),
the place of the soft tokens, the projection and its scale (unit: the model's own token-embedding std), the
cleaning of the output and the stop rule (both from :mod:`engine.prompts`). What differs: the forward passes.

How a batch of soft prompts is decoded:

1. the prompt part before the soft tokens is decoded once per demo set as sequence 0 and kept in the KV cache;
2. for each soft prompt ``i`` (sequence ``i + 1``) the prefix is copied (``llama_memory_seq_cp``, no compute),
   then one embeddings batch holds every sequence's soft tokens + the rest of the prompt (rows of the
   dequantised token-embedding matrix);
3. greedy steps decode every live sequence together in one token batch, each stopping on its own (a newline or a
   sentence end after some text, end of generation, or ``max_new_tokens``), with the same no-repeat-3-gram rule;
4. the sequences are dropped from the cache, the prefix stays for the next call.

The token-embedding matrix is dequantised once with the ``gguf`` package and cached on disk as a float32 ``.npy``
(memory-mapped: only the rows a prompt uses are read), keyed by the file's path, size and mtime.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import paths
from engine.errors import GeneratorError
from engine.generators.base import GeneratorBase, _quiet_transformers
from engine.generators.gguf import _available_memory, _silence_llama_log, check_gguf
from engine.prompts import Demo, demo_pairs, sort_vocabulary

log = logging.getLogger(__name__)


class LlamaCppGenerator(GeneratorBase):
    """A GGUF generator on llama.cpp. Same constructor, knobs and methods as :class:`Generator`."""

    backend = "llama_cpp"

    def __init__(self, model: str | None = None, device: str = "auto", max_new_tokens: int = 32,
                 batch_size: int | None = None, *, n_threads: int | None = None, n_ctx: int = 4096, **knobs: Any) -> None:
        self.n_threads = n_threads or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                          else (os.cpu_count() or 1))
        self.n_ctx = n_ctx
        self._llama: Any = None
        self._ctx: Any = None
        self._vocab: Any = None
        self._embed: np.ndarray | None = None
        self._prefix_key: Any = None
        self._prefix_len = 0
        self._stop_ids: set[int] = set()
        self._content_ids: set[int] = set()
        super().__init__(model, "cpu" if device == "auto" else device, max_new_tokens, batch_size, **knobs)
        if not self._gguf_file:
            raise GeneratorError(f"The llama.cpp backend needs a .gguf file; {self.model_name} is not one.",
                                 "Set [generator] backend = transformers (or auto) for Hugging Face folders.")

    @property
    def path(self) -> Path:
        return Path(self._source) / str(self._gguf_file)

    # ---- loading --------------------------------------------------------------------------------------------
    def load(self) -> LlamaCppGenerator:
        """Load the tokenizer, the embedding matrix and the weights, once (later calls return at once).

        Length: the stages of a load in the order they run, each reporting its progress; split up, the order
        of the stages (and which are once-only) would be harder to follow.
        """
        with self._lock:
            if self._ctx is not None:
                return self
            try:
                import llama_cpp
            except ImportError as exc:
                raise GeneratorError("The llama.cpp generator backend needs llama-cpp-python, which is missing.",
                                     "pip install llama-cpp-python, or set [generator] backend = "
                                     "transformers.") from exc
            path = self.path
            base = paths.cache_dir() / self._cache_base(path)
            fresh_embed = not (Path(f"{base}.npy").is_file() and Path(f"{base}.json").is_file())
            fresh_tok = not (Path(f"{base}-tokenizer") / "tokenizer_config.json").is_file()
            # The first load does two slow conversions (cached afterwards): say which steps this load has.
            stages = ["checking the model file"]
            stages += ["converting the tokenizer (once)"] if fresh_tok else ["loading the tokenizer"]
            stages += ["dequantising the embeddings (once)"] if fresh_embed else []
            stages += ["loading the weights", "sorting the vocabulary"]

            def step(stage: str, fraction: float | None = None) -> None:
                self._report(stage, stages.index(stage) + 1, len(stages), fraction)

            step(stages[0])
            check_gguf(path, full=fresh_embed)
            size = path.stat().st_size
            avail = _available_memory()
            need = int(size * 1.3) + 512 * 2**20
            if avail is not None and need > avail:
                raise GeneratorError(
                    f"Generator model {path.name} needs about {need / 2**30:.1f} GiB of memory; "
                    f"{avail / 2**30:.1f} GiB is available.",
                    "Close other programs, or pick a smaller model (`iz models list`).",
                )
            step(stages[1])
            with _quiet_transformers():
                tokenizer = self._load_tokenizer(path)
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._tokenizer = tokenizer
            if fresh_embed:
                stage = stages[2]
                step(stage, 0.0)
                self._embed = self._embedding_matrix(path, lambda f: step(stage, f))
            else:
                self._embed = self._embedding_matrix(path)
            self._embed_std = float(self._embed_stats(path)["std"])
            step("loading the weights")
            _silence_llama_log()
            llama_cpp.llama_backend_init()
            mparams = llama_cpp.llama_model_default_params()
            mparams.use_mmap = True
            model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
            if not model:
                raise GeneratorError(f"llama.cpp could not load {path}.",
                                     "The file may be corrupt: re-pull it, or use another model.")
            cparams = llama_cpp.llama_context_default_params()
            cparams.n_ctx = self.n_ctx
            cparams.n_batch = self.n_ctx
            cparams.n_ubatch = min(512, self.n_ctx)
            cparams.n_seq_max = self.batch_size + 1
            cparams.kv_unified = True
            cparams.n_threads = self.n_threads
            cparams.n_threads_batch = self.n_threads
            ctx = llama_cpp.llama_init_from_model(model, cparams)
            if not ctx:
                llama_cpp.llama_model_free(model)
                raise GeneratorError(f"llama.cpp could not create a context for {path.name}.",
                                     "Lower [generator] batch_size, or free some memory.")
            self._llama, self._ctx = model, ctx
            self._vocab = llama_cpp.llama_model_get_vocab(model)
            self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
            self._n_embd = llama_cpp.llama_model_n_embd(model)
            if self._n_embd != self._embed.shape[1]:
                raise GeneratorError(f"{path.name}: embedding width {self._embed.shape[1]} does not match the "
                                     f"model's {self._n_embd}.", "Re-pull the model file.")
            step("sorting the vocabulary")
            self._sort_vocabulary()
            self._model = self  # the base class checks _model to know it is loaded
            log.info("generator %s on llama.cpp (%d threads, hidden %d, embedding std %.4f)",
                     self.model_name, self.n_threads, self._n_embd, self._embed_std)
            return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, hidden) vectors of what each text says (engine/embeddings.py: last layer, mean, normalised)."""
        from engine.embeddings import LlamaEmbedder

        with self._lock:
            if getattr(self, "_embedder", None) is None:
                self._embedder = LlamaEmbedder(self.path, self.n_threads)
            return self._embedder(texts)

    def close(self) -> None:
        import llama_cpp

        with self._lock:
            if getattr(self, "_embedder", None) is not None:
                self._embedder.close()
                self._embedder = None
            if self._ctx is not None:
                llama_cpp.llama_free(self._ctx)
                llama_cpp.llama_model_free(self._llama)
                self._ctx = self._llama = None
                self._model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    @staticmethod
    def _cache_base(path: Path) -> str:
        """The cache entries' common name: the file's stem (dots replaced, so that no suffix is mistaken for
        one) and a key of its resolved path, size and mtime, so a re-pulled or edited file is never served
        another file's matrix or tokenizer."""
        st = path.stat()
        key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        return f"embd-{path.stem.replace('.', '_')}-{key}"

    def _embedding_matrix(self, path: Path, progress: Callable[[float], None] | None = None) -> np.ndarray:
        """The dequantised token-embedding matrix, memory-mapped from the disk cache (made on first use, in blocks
        of rows so that ``progress`` hears the share done)."""
        base = paths.cache_dir() / self._cache_base(path)
        npy, stats_file = Path(f"{base}.npy"), Path(f"{base}.json")
        if not (npy.is_file() and stats_file.is_file()):
            from gguf import GGUFReader
            from gguf.quants import dequantize

            reader = GGUFReader(str(path))
            tensor = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
            if tensor is None:
                raise GeneratorError(f"{path.name} has no token_embd.weight tensor.",
                                     "Use a llama.cpp-compatible causal LM GGUF.")
            data = tensor.data
            cols = int(tensor.shape[0])
            rows = int(data.shape[0]) if data.ndim > 1 else 1
            block = max(1, rows // 20)
            parts = []
            for start in range(0, rows, block):
                part = dequantize(data[start:start + block], tensor.tensor_type)
                parts.append(part.astype(np.float32, copy=False).reshape(-1, cols))
                if progress is not None:
                    progress(min(start + block, rows) / rows)
            matrix = np.concatenate(parts, axis=0)
            del parts
            npy.parent.mkdir(parents=True, exist_ok=True)
            stats = {"std": float(matrix.std()), "rows": int(matrix.shape[0]), "cols": int(matrix.shape[1])}
            # Stats first, the matrix last: a crash in between leaves no .npy, so the next load redoes both.
            # Temporary names of this process and call alone: two engines (a sweep's workers) preparing the same
            # model at once each write their own file, and the second rename harmlessly replaces the first.
            unique = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp_stats = Path(f"{base}.{unique}.tmp.json")
            tmp_stats.write_text(json.dumps(stats), encoding="utf-8")
            os.replace(tmp_stats, stats_file)
            tmp = Path(f"{base}.{unique}.tmp.npy")
            np.save(tmp, matrix)
            os.replace(tmp, npy)
            del matrix
        return np.load(npy, mmap_mode="r")

    def _embed_stats(self, path: Path) -> dict[str, Any]:
        stats_file = paths.cache_dir() / f"{self._cache_base(path)}.json"
        return json.loads(stats_file.read_text(encoding="utf-8"))

    def _load_tokenizer(self, path: Path) -> Any:
        """The Hugging Face tokenizer of the GGUF file. Converting it from the GGUF takes ~25 s for Qwen's 150k
        vocabulary, so the result is saved in the cache and later loads read it back in about a second."""
        from transformers import AutoTokenizer

        cached = paths.cache_dir() / f"{self._cache_base(path)}-tokenizer"
        if (cached / "tokenizer_config.json").is_file():
            with contextlib.suppress(Exception):
                return AutoTokenizer.from_pretrained(str(cached))
        tokenizer = AutoTokenizer.from_pretrained(self._source, gguf_file=self._gguf_file)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")  # per process, as above
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp, ignore_errors=True)
            tokenizer.save_pretrained(str(tmp))
            shutil.rmtree(cached, ignore_errors=True)
            os.replace(tmp, cached)
        return tokenizer

    def _sort_vocabulary(self) -> None:
        """The stop rule's token sets (:func:`engine.prompts.sort_vocabulary`), the same as the base class's."""
        tok = self._tokenizer
        texts = tok.batch_decode([[i] for i in range(len(tok))])
        self._stop_ids, self._content_ids = sort_vocabulary(texts, (tok.eos_token_id, tok.pad_token_id))

    # ---- sizes ----------------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        self.load()
        assert self._embed is not None
        return int(self._embed.shape[1])

    # ---- decoding -------------------------------------------------------------------------------------------
    def _decode(self, batch: Any) -> None:
        import llama_cpp

        rc = llama_cpp.llama_decode(self._ctx, batch)
        if rc != 0:
            raise GeneratorError(f"llama.cpp failed to decode a batch (code {rc}).",
                                 "Lower [generator] batch_size or max_new_tokens.")

    def _token_batch(self, items: list[tuple[int, int, int, bool]]) -> Any:
        """A batch of (token, position, sequence, wants logits)."""
        import llama_cpp

        batch = llama_cpp.llama_batch_init(len(items), 0, 1)
        batch.n_tokens = len(items)
        for i, (token, pos, seq, logits) in enumerate(items):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = int(logits)
        return batch

    def _ensure_prefix(self, key: Any, before_ids: list[int]) -> None:
        """Sequence 0 holds the prompt part before the soft tokens; decoded only when the demos change."""
        import llama_cpp

        if self._prefix_key == key:
            return
        mem = llama_cpp.llama_get_memory(self._ctx)
        llama_cpp.llama_memory_clear(mem, True)
        self._prefix_key, self._prefix_len = None, 0
        step = 512
        for start in range(0, len(before_ids), step):
            chunk = before_ids[start:start + step]
            batch = self._token_batch([(t, start + i, 0, False) for i, t in enumerate(chunk)])
            try:
                self._decode(batch)
            finally:
                llama_cpp.llama_batch_free(batch)
        self._prefix_key, self._prefix_len = key, len(before_ids)

    def _run(self, rows: list[np.ndarray], sample: tuple[float, np.random.Generator] | None) -> list[str]:
        """Decode ``prefix + row`` for each row (``[len, hidden]`` float32 embeddings): greedy, or sampled.

        Length: one batched decoding loop over llama.cpp's low-level API (prefix copy, one embeddings batch,
        then token steps for every live sequence); its buffers and sequence bookkeeping belong together.
        """
        import llama_cpp

        mem = llama_cpp.llama_get_memory(self._ctx)
        n = len(rows)
        n0 = self._prefix_len
        for s in range(1, n + 1):
            llama_cpp.llama_memory_seq_cp(mem, 0, s, -1, -1)
        total = sum(r.shape[0] for r in rows)
        batch = llama_cpp.llama_batch_init(total, self._n_embd, 1)
        out_index: list[int] = []
        try:
            batch.n_tokens = total
            flat = np.ascontiguousarray(np.concatenate(rows, axis=0), dtype=np.float32)
            ctypes.memmove(batch.embd, flat.ctypes.data, flat.nbytes)
            k = 0
            for s, r in enumerate(rows, start=1):
                for j in range(r.shape[0]):
                    batch.pos[k] = n0 + j
                    batch.n_seq_id[k] = 1
                    batch.seq_id[k][0] = s
                    batch.logits[k] = int(j == r.shape[0] - 1)
                    k += 1
                out_index.append(k - 1)
            self._decode(batch)
        finally:
            llama_cpp.llama_batch_free(batch)

        generated: list[list[int]] = [[] for _ in range(n)]
        live = list(range(n))
        positions = [n0 + r.shape[0] for r in rows]
        eos = self._tokenizer.eos_token_id
        try:
            for _step in range(self.max_new_tokens):
                picks: list[tuple[int, int]] = []
                for idx, row in zip(out_index, live, strict=True):
                    ptr = llama_cpp.llama_get_logits_ith(self._ctx, idx)
                    logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float64)
                    self._ban_repeats(logits, generated[row])
                    if sample is None:
                        token = int(np.argmax(logits))
                    else:
                        temperature, rng = sample
                        z = logits / temperature
                        z -= z.max()
                        p = np.exp(z)
                        p /= p.sum()
                        token = int(rng.choice(len(p), p=p))
                    picks.append((row, token))
                still: list[int] = []
                items: list[tuple[int, int, int, bool]] = []
                for row, token in picks:
                    if token == eos or llama_cpp.llama_vocab_is_eog(self._vocab, token):
                        continue
                    generated[row].append(token)
                    started = any(t in self._content_ids for t in generated[row])
                    if token in self._stop_ids and started:
                        continue
                    still.append(row)
                    items.append((token, positions[row], row + 1, True))
                    positions[row] += 1
                if not still or _step == self.max_new_tokens - 1:
                    break
                batch = self._token_batch(items)
                try:
                    self._decode(batch)
                finally:
                    llama_cpp.llama_batch_free(batch)
                live = still
                out_index = list(range(len(still)))
        finally:
            for s in range(1, n + 1):
                llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
        return [self._tokenizer.decode(g, skip_special_tokens=True) for g in generated]

    def _ban_repeats(self, logits: np.ndarray, generated: list[int]) -> None:
        """No-repeat-n-gram on the generated tokens (as transformers' ``no_repeat_ngram_size``)."""
        n = self.no_repeat_ngram_size
        if n <= 0 or len(generated) < n - 1:
            return
        tail = tuple(generated[len(generated) - (n - 1):]) if n > 1 else ()
        for i in range(len(generated) - n + 1):
            if tuple(generated[i:i + n - 1]) == tail:
                logits[generated[i + n - 1]] = -np.inf

    def _pieces(self, demos: Sequence[Demo], style: str | None = None) -> tuple[Any, list[int], np.ndarray]:
        key = (self.soft_position, style or self.prompt_style, demo_pairs(demos))
        before_ids, after_ids = self._prompt_pieces(demos, style)
        assert self._embed is not None
        after = np.asarray(self._embed[after_ids], dtype=np.float32)
        return key, before_ids, after

    def instructions(self, Z: Any, demos: Sequence[Demo], projection: torch.Tensor, n_tokens: int,
                     sample: tuple[float, int] | None = None, style: str | None = None) -> list[str]:
        Zt, A = self._soft_inputs(Z, demos, projection, n_tokens)
        self._check_style(style)
        mode: tuple[float, np.random.Generator] | None = None
        if sample is not None:
            self._check_sample(demos, sample[0])
            mode = (float(sample[0]), np.random.default_rng(int(sample[1])))
        results: list[str] = []
        with self._lock:
            self.load()
            key, before_ids, after = self._pieces(demos, style)
            self._ensure_prefix(key, before_ids)
            soft = (Zt @ A).reshape(Zt.shape[0], n_tokens, self.hidden_size).numpy()
            for start in range(0, soft.shape[0], self.batch_size):
                rows = [np.concatenate([s, after], axis=0) for s in soft[start:start + self.batch_size]]
                results.extend(self._finish(raw) for raw in self._run(rows, mode))
        return results

    def sample(self, demos: Sequence[Demo], n: int, temperature: float, seed: int,
               style: str | None = None) -> list[str]:
        if n < 1:
            return []
        self._check_sample(demos, temperature)
        self._check_style(style)
        rng = np.random.default_rng(int(seed))
        results: list[str] = []
        with self._lock:
            self.load()
            key, before_ids, after = self._pieces(demos, style)
            self._ensure_prefix(key, before_ids)
            for start in range(0, n, self.batch_size):
                k = min(self.batch_size, n - start)
                results.extend(self._finish(raw) for raw in self._run([after] * k, (float(temperature), rng)))
        return results
