"""Second tries for soft prompts that decode to an instruction a run already has.

Why this exists: a larger generator mostly ignores a small soft prompt, so greedy decoding lands on the same two or
three sentences for most z (Qwen2.5-Coder-1.5B: 1-5 distinct instructions in 26 proposals on several tasks,
BENCHMARKS.md), and a run stops with ``no_new_instructions`` before it has spent its budget. Decoding such a z
again by sampling, with its soft prompt still in place, keeps the point in the latent space and gives the black
box a new text to score. Kept free of torch and of the store so that the runner and the generator benchmark share
one rule and a unit test can check it with plain lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def replace_repeats(texts: list[str], taken: Iterable[str], retry: Callable[[list[int], int], list[str]],
                    tries: int, reject: Callable[[str], bool] | None = None) -> tuple[list[str], int]:
    """``texts`` with repeats replaced by new texts from ``retry``, and how many repeats the greedy texts had.

    A text is a repeat when it is in ``taken`` (what the run already has) or earlier in ``texts``, or when
    ``reject`` says so (the runner passes :func:`engine.prompts.is_echo` with ``resample_echoes``: a text that only
    restates the generator's prompt is as useless as a repeat, and a second decoding of its z is a better use of an
    evaluation). ``retry(rows, attempt)`` decodes the soft prompts at positions ``rows`` again (attempt 0, 1, ...)
    and returns one text per row; the first text nobody has yet (and ``reject`` accepts) replaces the repeat. After
    ``tries`` attempts a position that never found one keeps its greedy text (a repeat, which the runner scores
    for free; an echo, which it scores as any new text). Order is kept, so a batch's first occurrence
    of a text is the greedy one.
    """
    seen = set(taken)
    out = list(texts)
    repeats: list[int] = []
    bad = reject or (lambda _text: False)
    for i, text in enumerate(out):
        if text in seen or bad(text):
            repeats.append(i)
        else:
            seen.add(text)
    n_repeats = len(repeats)
    for attempt in range(tries):
        if not repeats:
            break
        tried = retry(repeats, attempt)
        if len(tried) != len(repeats):
            raise ValueError(f"retry returned {len(tried)} texts for {len(repeats)} soft prompts")
        still: list[int] = []
        for i, text in zip(repeats, tried, strict=True):
            if text in seen or bad(text):
                still.append(i)
            else:
                out[i] = text
                seen.add(text)
        repeats = still
    return out, n_repeats
