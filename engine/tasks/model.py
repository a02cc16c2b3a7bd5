"""The task data model: an example, a task, and how a task turns an instruction into a prompt.

Kept free of I/O so the TUI, the engine and the tests can build tasks in memory; the loader and the importers are
the only places that read or write task folders.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The evaluation prompt used when a task.toml has no ``template``. The black box sees the instruction, then one
#: input, and completes the output; the metric then compares that completion with the example's answers.
DEFAULT_TEMPLATE = "Instruction: {instruction}\n\nInput: {input}\n\nOutput:"

#: The two placeholders every prompt must contain (the instruction being scored, and one example's input): each
#: in the template or in the system prompt.
PLACEHOLDERS = ("{instruction}", "{input}")
_PLACEHOLDER_RE = re.compile(r"\{(instruction|input)\}")
#: The two ways to ask an OpenAI-compatible endpoint (as ``api`` in an endpoint profile).
APIS = ("chat", "completions")
#: What previews put where the instruction being scored will go.
PREVIEW_INSTRUCTION = "<the instruction being scored>"


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
class Judge:
    """A rubric another model scores answers by (``metric = "judge"``), and the endpoint profile that judges.

    ``endpoint`` None means the endpoint being scored judges its own answers (fine for a quick look; a stronger
    judge is named by profile).
    """

    rubric: str
    endpoint: str | None = None


@dataclass(frozen=True)
class Prompt:
    """What one scoring request sends: on a chat endpoint a system message (or none) and a user message; on a
    completions endpoint (no roles) ``system`` is None and ``user`` is the whole prompt."""

    api: str
    system: str | None
    user: str

    def text(self) -> str:
        """The prompt as a person reads it (previews): the roles labelled on chat, the bare prompt otherwise."""
        if self.api == "completions":
            return self.user
        parts = [f"[system]\n{self.system}"] if self.system else []
        return "\n".join([*parts, f"[user]\n{self.user}"])


@dataclass(frozen=True)
class Task:
    """A validated task: metadata from task.toml plus its examples from data.jsonl.

    ``source`` is the task folder (or the imported file for a task built in memory); ``builtin`` says whether it
    ships with the project. ``notes`` carries remarks made while loading or importing (dropped duplicates, ...)
    so front ends can show them; it takes no part in equality.

    Prompt control (all optional; None = the endpoint profile's value): ``system`` is the system prompt, ``api``
    picks chat or completions, ``temperature``/``max_tokens``/``stop`` override the profile for this task's
    scoring calls (they reach :meth:`engine.blackbox.BlackBox.complete` as overrides, so they are in the cache
    key). ``python`` ("metric.py:score") and ``judge`` configure the metrics of those names. ``demos``, when
    given, are the only examples shown to the generator (the instruction-induction set-up: demos from ``induce``,
    dev and test from ``execute``); when empty, demos are drawn from ``examples`` like dev and test.
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
    system: str | None = None
    api: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    python: str | None = None
    judge: Judge | None = None
    demos: tuple[Example, ...] = ()

    def score(self, prediction: str, answers: tuple[str, ...] | list[str]) -> float:
        """Score a black-box answer with this task's metric (and its case rule).

        A ``judge`` task cannot be scored here (it needs a black box): :func:`engine.blackbox.score_instruction`
        does that.
        """
        if self.metric == "python":
            from engine.tasks.user_metrics import python_metric

            return python_metric(self).score(prediction, answers)
        from engine.tasks.metrics import score

        return score(self.metric, prediction, answers, self.case_sensitive)

    @property
    def eval_template(self) -> str:
        """The prompt template actually used for scoring (the task's own, else :data:`DEFAULT_TEMPLATE`)."""
        return self.template or DEFAULT_TEMPLATE

    def prompt(self, instruction: str, example: Example) -> str:
        """The user message (or, without a system prompt, the whole completion prompt) for one example.

        Both placeholders are substituted in one pass (not ``str.format``) so templates may contain other braces
        (JSON, code) without escaping, and a ``{input}`` inside a generated instruction (or the reverse) is left
        as text instead of being substituted a second time.
        """
        return _fill(self.eval_template, instruction, example)

    def render(self, instruction: str, example: Example, api: str) -> Prompt:
        """Exactly what a scoring request for ``example`` sends on an ``api`` endpoint.

        A completions endpoint has no roles, so a system prompt goes first in the one prompt, followed by a blank
        line: the instruction (which may live in the system prompt) must never be dropped.
        """
        user = self.prompt(instruction, example)
        system = _fill(self.system, instruction, example) if self.system else None
        if api == "completions":
            return Prompt(api, None, f"{system}\n\n{user}" if system else user)
        return Prompt(api, system, user)

    def blackbox_overrides(self) -> dict[str, Any]:
        """The task's sampling settings as :meth:`BlackBox.complete` keywords (only those it sets, so a task
        without any asks exactly as before and keeps its cached answers)."""
        out: dict[str, Any] = {}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        if self.stop is not None:
            out["stop"] = list(self.stop)
        return out

    def settings_lines(self) -> list[str]:
        """The task's prompt-control settings in words, for ``iz tasks show`` and the TUI preview."""
        shown = [("api", self.api), ("temperature", self.temperature), ("max_tokens", self.max_tokens),
                 ("stop", None if self.stop is None else list(self.stop))]
        # JSON spells strings and lists as TOML does, so a line can be pasted back into task.toml.
        lines = [f"{key} = {json.dumps(value) if key in ('api', 'stop') else value}"
                 for key, value in shown if value is not None]
        if self.metric == "python" and self.python:
            lines.append(f"python = {self.python}")
        if self.judge is not None:
            lines.append(f"judge endpoint = {self.judge.endpoint or '(the endpoint being scored)'}")
            lines.append(f"judge rubric = {json.dumps(self.judge.rubric, ensure_ascii=False)}")
        return lines


def _fill(text: str, instruction: str, example: Example) -> str:
    values = {"instruction": instruction.strip(), "input": example.input}
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)
