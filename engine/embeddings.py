"""What an instruction says, as a vector: the generator model's last-layer hidden states, mean-pooled over the
instruction's tokens and L2-normalised (the representation INSTINCT's surrogate learns on, engine/methods/instinct).

Why the last layer and the mean: llama.cpp's embedding mode returns the final layer after the output norm, pooled as
asked, so the GGUF and the Hugging Face backends can give the same thing; a causal model's last-token state is
mostly about the next token, while the mean over the instruction covers all of what it says. Normalised so that
instructions of different lengths compare by direction.

For a GGUF generator a second llama.cpp context is opened on the same file in embedding mode (the weights are
memory-mapped, so they are shared, not loaded twice); for a Hugging Face model the loaded model is run once more
with ``output_hidden_states``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _normalised(rows: Any) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float64)
    return a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)


class LlamaEmbedder:
    """Mean-pooled last-layer states of a GGUF model through llama.cpp (opened on first use)."""

    def __init__(self, path: Path, n_threads: int) -> None:
        self.path, self.n_threads = path, n_threads
        self._llm: Any = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0))
        if self._llm is None:
            import llama_cpp

            self._llm = llama_cpp.Llama(model_path=str(self.path), embedding=True, n_ctx=512, n_batch=512,
                                        n_ubatch=512, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                                        n_threads=self.n_threads, verbose=False)
        return _normalised([self._llm.embed(t) for t in texts])

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def hf_embed(model: Any, tokenizer: Any, texts: Sequence[str], device: Any) -> np.ndarray:
    """The same for a loaded Hugging Face causal LM: the last hidden layer, averaged over the real tokens."""
    import torch

    if not texts:
        return np.zeros((0, 0))
    rows = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(text, return_tensors="pt").to(device)
            out = model(**enc, output_hidden_states=True)
            rows.append(out.hidden_states[-1][0].float().mean(0).cpu().numpy())
    return _normalised(rows)
