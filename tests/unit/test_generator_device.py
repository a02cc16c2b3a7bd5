"""What the transformers generator does per device, without loading a model: its stopping rule (masks over the
vocabulary that live on the model's device) and its batch size when the settings leave it open."""

from __future__ import annotations

import torch

from engine.config import GeneratorSettings
from engine.generators.base import default_batch_size
from engine.generators.transformers import Generator, _StopAtLineOrSentence


def reference(input_ids: torch.Tensor, stop: set[int], content: set[int]) -> torch.Tensor:
    """The rule as written before the masks: the last token ends a line or sentence, and some token carried text."""
    ended = torch.isin(input_ids[:, -1], torch.tensor(sorted(stop)))
    started = torch.isin(input_ids, torch.tensor(sorted(content))).any(dim=1)
    return ended & started


def test_the_masks_decide_as_the_id_lists_did() -> None:
    gen = torch.Generator().manual_seed(0)
    vocab = 300
    stop = {int(i) for i in torch.randint(0, vocab, (12,), generator=gen)}
    content = {int(i) for i in torch.randint(0, vocab, (200,), generator=gen)} - stop
    rule = _StopAtLineOrSentence(stop, content, vocab)
    decided = 0
    for length in (1, 2, 5, 17):
        ids = torch.randint(0, vocab, (64, length), generator=gen)
        ids[::3, -1] = sorted(stop)[0]  # plenty of rows that end on a stop token
        got = rule(ids, torch.zeros(64, vocab))
        assert got.dtype == torch.bool and got.shape == (64,)
        assert torch.equal(got, reference(ids, stop, content))
        decided += int(got.sum())
    assert decided > 0  # the comparison covered rows that stop, not only rows that go on


def test_a_newline_before_any_text_does_not_stop() -> None:
    newline, word, other = 3, 7, 9
    rule = _StopAtLineOrSentence({newline}, {word}, vocab_size=10)
    rows = torch.tensor([[other, newline], [newline, newline], [word, newline], [word, other], [newline, word]])
    assert rule(rows, torch.zeros(5, 10)).tolist() == [False, False, True, False, False]
    assert rule(torch.tensor([[newline]]), torch.zeros(1, 10)).tolist() == [False]
    assert rule(torch.zeros((2, 0), dtype=torch.long), torch.zeros(2, 10)).tolist() == [False, False]


def test_ids_past_the_tokenizer_up_to_the_model_vocabulary_are_valid() -> None:
    # Qwen's output layer has 151,936 rows for a 151,665-token tokenizer: a random or odd model may write one.
    rule = _StopAtLineOrSentence({1}, {2}, vocab_size=50)
    assert rule(torch.tensor([[2, 49], [2, 1]]), torch.zeros(2, 50)).tolist() == [False, True]
    assert _StopAtLineOrSentence({1}, {40}).is_content.shape == (41,)  # no size given: the largest id bounds it


def test_the_batch_size_left_open_is_8_on_the_cpu_and_32_on_a_gpu() -> None:
    assert GeneratorSettings().batch_size is None
    assert (default_batch_size("cpu"), default_batch_size("cuda"), default_batch_size("cuda:1")) == (8, 32, 32)
    assert Generator(device="cpu", lazy=True).batch_size == 8
    assert Generator(device="cpu", batch_size=3, lazy=True).batch_size == 3  # a set value is kept
    assert GeneratorSettings(batch_size=16).batch_size == 16
