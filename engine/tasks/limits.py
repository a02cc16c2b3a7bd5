"""How large a task's examples may be, and how few a task may have: checked when a task is imported and again when a
run draws its splits (a task folder written by hand never went through an import).

Why these numbers: an example is sent inside a prompt, so one far beyond any model's context can only fail, after
the calls before it were paid. 20,000 characters is about 5,000 tokens, more than the embedded models' context
(2,048-4,096 tokens) and a few times a typical example; a remote endpoint with a longer context still gets a clear
message rather than a silent truncation. A task that no run could split is refused at import: it needs at least one
demo (unless it brings its own), one dev example to score on and one test example to report. One smaller than the
default split (5 demos + 1 + 1) is imported with a note saying how many demos a run can take.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import TaskError
from engine.tasks.model import Example

MAX_EXAMPLE_CHARS = 20_000
#: Demos an imported task is checked for (the run setting n_demos' default).
DEMOS = 5


def _short(text: str) -> str:
    text = " ".join(text.split())
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def check_sizes(examples: Sequence[Example], where: str) -> None:
    """Refuse an example whose input or an answer is longer than :data:`MAX_EXAMPLE_CHARS`, naming it."""
    for i, ex in enumerate(examples, start=1):
        for what, text in (("input", ex.input), *(("answer", a) for a in ex.answers)):
            if len(text) > MAX_EXAMPLE_CHARS:
                raise TaskError(
                    f"{where}: example {i} (input {_short(ex.input)}) has an {what} of {len(text):,} characters; "
                    f"the limit is {MAX_EXAMPLE_CHARS:,} (about {MAX_EXAMPLE_CHARS // 4:,} tokens)",
                    "shorten or drop that example: a prompt holding it would not fit a model's context")


def check_count(name: str, n_examples: int, n_demos: int) -> list[str]:
    """Refuse a task no run can split: fewer than 1 demo (unless ``n_demos`` of its own) + 1 dev + 1 test example.
    Returns a note when the default split (:data:`DEMOS` demos + 1 + 1) does not fit, saying what does."""
    own = n_demos > 0
    need = 2 if own else 3
    if n_examples < need:
        split = "1 dev + 1 test" if own else "1 demo + 1 dev + 1 test"
        raise TaskError(f"task {name} has {n_examples} example{'s' if n_examples != 1 else ''}: too few for "
                        f"{split} (at least {need})", "add examples to the file and import it again")
    if not own and n_examples < DEMOS + 2:
        return [f"{n_examples} examples: a run needs --demos {n_examples - 2} or fewer (the default is {DEMOS})"]
    return []
