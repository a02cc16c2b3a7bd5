"""Checks on a GGUF file and the machine before llama.cpp is asked to load it, so a wrong or truncated file, or too
little memory, is one clear message instead of a crash in native code; and llama.cpp's own log kept quiet."""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

from engine.errors import GeneratorError

log = logging.getLogger("engine.generators.llama_cpp")

_GGUF_MAGIC = b"GGUF"


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_gguf(path: Path, full: bool = True) -> None:
    """A clear error for a file that is not a whole GGUF model, before llama.cpp gets to crash on it.

    ``full`` parses every tensor header (seconds for a 150k-token vocabulary); without it only the magic is read,
    for a file whose identity (path, size, mtime) already passed once and has its cache entries."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise GeneratorError(f"Cannot read generator model {path}: {exc.strerror or exc}",
                             "Check the path and its permissions.") from None
    if magic != _GGUF_MAGIC:
        raise GeneratorError(f"Generator model {path} is not a GGUF file (it does not start with 'GGUF').",
                             "Point [generator] model at a .gguf model file, or re-pull it with `iz models pull`.")
    if not full:
        return
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        size = path.stat().st_size
        for t in reader.tensors:
            if int(t.data_offset) + int(t.n_bytes) > size:
                raise ValueError("tensor data runs past the end of the file")
    except Exception as exc:
        raise GeneratorError(
            f"Generator model {path} is truncated or corrupt ({type(exc).__name__}: {str(exc)[:160]}).",
            "Re-pull it (`iz models remove NAME` then `iz models pull NAME`) or download the file again.",
        ) from None


_LOG_CALLBACK: Any = None


def _silence_llama_log() -> None:
    """llama.cpp logs every load to stderr, which is the engine's own log: keep only errors out of it."""
    global _LOG_CALLBACK
    import llama_cpp

    if _LOG_CALLBACK is None:
        @llama_cpp.llama_log_callback
        def _quiet(level: int, text: bytes, user_data: Any) -> None:
            if level == 4 and text:  # GGML_LOG_LEVEL_ERROR
                log.error("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

        _LOG_CALLBACK = _quiet
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p())
