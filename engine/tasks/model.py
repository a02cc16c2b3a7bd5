"""The task data model: an example, a task, and how a task turns an instruction into a prompt.

Kept free of I/O so the TUI, the engine and the tests can build tasks in memory; the loader and the importers are
the only places that read or write task folders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

#: The evaluation prompt used when a task.toml has no ``template``. The black box sees the instruction, then one
#: input, and completes the output; the metric then compares that completion with the example's answers.
DEFAULT_TEMPLATE = "Instruction: {instruction}\n\nInput: {input}\n\nOutput:"

#: The two placeholders every template must contain (the instruction being scored, and one example's input).
PLACEHOLDERS = ("{instruction}", "{input}")
_PLACEHOLDER_RE = re.compile(r"\{(instruction|input)\}")


@dataclass(frozen=True)
class Example:
    """One input and every answer that counts as right (the first is the one shown in demonstrations)."""

    input: str
    answers: tuple[str, ...]

    @property
    def output(self) -> str:
        """The primary answer: what a demonstration shows after the input."""
        return self.answers[0]


@dataclass(frozen=True)
class Task:
    """A validated task: metadata from task.toml plus its examples from data.jsonl.

    ``source`` is the task folder (or the imported file for a task built in memory); ``builtin`` says whether it
    ships with the project. ``notes`` carries remarks made while loading or importing (dropped duplicates, ...)
    so front ends can show them; it takes no part in equality.
    """

    name: str
    description: str
    metric: str
    template: str | None
    examples: tuple[Example, ...]
    source: Path
    builtin: bool
    notes: tuple[str, ...] = field(default=(), compare=False)
    case_sensitive: bool = False

    def score(self, prediction: str, answers: tuple[str, ...] | list[str]) -> float:
        """Score a black-box answer with this task's metric (and its case rule)."""
        from engine.tasks.metrics import score

        return score(self.metric, prediction, answers, self.case_sensitive)

    @property
    def eval_template(self) -> str:
        """The prompt template actually used for scoring (the task's own, else :data:`DEFAULT_TEMPLATE`)."""
        return self.template or DEFAULT_TEMPLATE

    def prompt(self, instruction: str, example: Example) -> str:
        """The black-box prompt for one example.

        Both placeholders are substituted in one pass (not ``str.format``) so templates may contain other braces
        (JSON, code) without escaping, and a ``{input}`` inside a generated instruction (or the reverse) is left
        as text instead of being substituted a second time.
        """
        values = {"instruction": instruction.strip(), "input": example.input}
        return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], self.eval_template)
