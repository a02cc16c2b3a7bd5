"""What the forms ask for, as plain data: the run to start (:class:`RunRequest`), its budget, the presets, and the
checks on typed values. Pure (no widgets), so it is unit-tested without a terminal; screens read their widgets
into these and hand the result to the app.

Run settings have one home, :class:`engine.config.RunSettings`: the method list, the defaults and the budget
arithmetic (evaluations <-> BO iterations) come from there and are not repeated here.

Budget presets exist because the paper's setting (150 evaluations of 20 dev examples) takes a long time on a
laptop CPU; "quick" is a first try (about a minute on the bundled 135M pair, two to three with the default Qwen
pair on 2 cores), "paper" reproduces the published setting (the run defaults out of the box).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config import RunSettings

if TYPE_CHECKING:
    from engine.cost import Estimate


@dataclass(frozen=True)
class Budget:
    """Evaluations (instructions scored), Sobol initial points, batch per BO iteration, dev and test sizes."""

    evaluations: int
    n_init: int
    batch_size: int
    n_dev: int
    n_test: int

    @classmethod
    def of(cls, settings: RunSettings) -> Budget:
        """The budget a set of run settings spends."""
        return cls(settings.evaluations, settings.n_init, settings.batch_size, settings.n_dev, settings.n_test)

    @property
    def iterations(self) -> int:
        """BO iterations after the Sobol start (the engine's arithmetic)."""
        return RunSettings.iterations_for(self.evaluations, self.n_init, self.batch_size)

    @property
    def max_calls(self) -> int:
        """Black-box calls the budget may pay for at most (every dev example of every evaluation, then test)."""
        return self.evaluations * self.n_dev + self.n_test

    def settings(self) -> dict[str, int]:
        """Run settings for the engine; the iteration count follows from the budget."""
        return {"budget_evaluations": self.evaluations, "n_init": self.n_init, "batch_size": self.batch_size,
                "n_iterations": self.iterations, "n_dev": self.n_dev, "n_test": self.n_test}

    def problem(self) -> str | None:
        """What is wrong with these numbers, in words; None when a run can use them."""
        if min(self.evaluations, self.n_init, self.batch_size, self.n_dev) < 1 or self.n_test < 0:
            return "evals, init, batch and dev must be at least 1 (test may be 0)"
        if self.n_init > self.evaluations:
            return f"init ({self.n_init}) cannot exceed the budget ({self.evaluations} evaluations)"
        return None


PRESETS: dict[str, Budget] = {
    "quick": Budget(10, 5, 5, 5, 10),
    "paper": Budget.of(RunSettings()),
}
#: What the preset picker shows; "custom" is any other set of numbers.
PRESET_LABELS: dict[str, str] = {
    "quick": f"quick: {PRESETS['quick'].evaluations} evals (1-3 min)",
    "paper": (f"paper: {PRESETS['paper'].evaluations} evals "
              f"({PRESETS['paper'].n_init}+{PRESETS['paper'].iterations}×{PRESETS['paper'].batch_size})"),
    "custom": "custom",
}
#: The budget's number fields on the form: (Budget attribute, short label).
FIELDS: tuple[tuple[str, str], ...] = (("evaluations", "evals"), ("n_init", "init"), ("batch_size", "batch"),
                                       ("n_dev", "dev"), ("n_test", "test"))


def preset_of(budget: Budget | None) -> str:
    """The preset these numbers are, or "custom"."""
    return next((name for name, b in PRESETS.items() if b == budget), "custom")


def parse_budget(values: Mapping[str, str]) -> Budget | None:
    """The budget typed in the number fields (keyed by :data:`FIELDS` attribute), or None if one is not a number."""
    numbers: dict[str, int] = {}
    for attr, _ in FIELDS:
        try:
            numbers[attr] = int(values.get(attr, "").strip())
        except ValueError:
            return None
    return Budget(**numbers)


def parse_instructions(text: str) -> list[str]:
    """The manual method's instructions: one a line, blank lines skipped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class RunRequest:
    """Everything the engine needs to start a run, as chosen on the home screen."""

    task: str
    method: str
    endpoint: str
    settings: dict[str, Any]
    instructions: tuple[str, ...] = ()

    @property
    def budget(self) -> int:
        if takes_instructions(self.method):
            return len(self.instructions)
        return int(self.settings.get("budget_evaluations") or 0)


def takes_instructions(method: str) -> bool:
    """Whether ``method`` scores the user's own instructions (the form's text box) rather than a budget of
    proposals; the method's own declaration (engine.methods), False for a name no method has."""
    from engine.methods import METHODS

    found = METHODS.get(method)
    return bool(found and found.takes_instructions)


def parse_max_cost(text: str) -> float | None | str:
    """The "max $" field: None when empty (no cap), the USD amount, or what is wrong with it (a str)."""
    text = text.strip().lstrip("$").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return "max $ must be an amount of USD (like 0.50), or empty for no cap"
    if not value > 0 or value == float("inf"):
        return "max $ must be more than 0 (empty for no cap)"
    return value


def build_request(task: str | None, method: str, endpoint: str, budget: Budget | None,
                  instructions: Sequence[str] = (), *, n_examples: int | None = None,
                  n_demos: int = RunSettings.model_fields["n_demos"].default,
                  max_cost: float | None = None) -> RunRequest | str:
    """The run to start, or what is wrong with the form (said in words, not a traceback).

    ``n_examples`` is the task's size (None: unknown, not checked); ``n_demos`` the demos a run takes from it;
    ``max_cost`` the run's cost budget in USD (None: none)."""
    if not task:
        return "pick a task first"
    cap: dict[str, Any] = {} if max_cost is None else {"budget_cost": max_cost}
    if takes_instructions(method):
        if not instructions:
            return f"the {method} method scores instructions you write: type at least one (one a line)"
        settings: dict[str, Any] = {"method": method, **cap}
        if budget is not None:
            settings.update(n_dev=budget.n_dev, n_test=budget.n_test)
        return RunRequest(task, method, endpoint, settings, tuple(instructions))
    if budget is None:
        return "the budget numbers must be whole numbers"
    problem = budget.problem()
    if problem:
        return problem
    if n_examples is not None and budget.n_dev + budget.n_test + n_demos > n_examples:
        return (f"{task} has {n_examples} examples: dev {budget.n_dev} + test {budget.n_test} + {n_demos} demos "
                "do not fit; lower dev or test")
    return RunRequest(task, method, endpoint, {"method": method, **budget.settings(), **cap})


def estimate(method: str, budget: Budget | None, n_instructions: int = 0) -> str:
    """The line under the form saying what a run will cost (markup)."""
    if takes_instructions(method):
        return f"{n_instructions} instruction{'s' if n_instructions != 1 else ''} to score"
    if budget is None:
        return "[red]numbers only[/]"
    return (f"≤ {budget.max_calls} black-box calls "
            f"({budget.evaluations}×{budget.n_dev} dev + {budget.n_test} test)")


def compact_count(n: int) -> str:
    """A count for a one-line summary: 950, 12.3k, 4.5M."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def money_short(money: float | None, local: bool) -> str:
    """Money for a one-line summary (markup): ``~$0.0123``, ``free: local endpoint``, or how to make it known."""
    if money is None:
        return "[yellow]$ unknown: set price_input/price_output[/]"
    if local and money == 0:
        return "free: local endpoint"
    return f"~${money:.4f}" if money < 1 else f"~${money:,.2f}"


def budget_line(method: str, budget: Budget | None, n_instructions: int = 0, cost: Estimate | None = None) -> str:
    """The line under the form (markup): :func:`estimate`, or with an :class:`engine.cost.Estimate` of the run
    ``≤ N calls · ~T tokens · $X`` (what the run will spend at most, before cache hits)."""
    if cost is None or (not takes_instructions(method) and budget is None):
        return estimate(method, budget, n_instructions)
    head = f"{n_instructions} instruction{'s' if n_instructions != 1 else ''} · " if takes_instructions(method) else ""
    line = (f"{head}≤ {cost.calls} calls · ~{compact_count(cost.tokens)} tokens · "
            f"{money_short(cost.money, cost.local)}")
    return line + (f" (cut by the {cost.capped_by} cap)" if cost.capped_by else "")


def stored_budget(run: Mapping[str, Any]) -> int:
    """The evaluation budget of a recorded run (a history row), as the engine counts it; 0 if unreadable."""
    from engine.config import revive

    try:
        stored = revive(run)
    except Exception:  # a row written by another version: the engine's RunStarted will say the budget
        return 0
    from engine.methods import get

    try:
        return get(stored.settings.method).budget(stored.settings, len(stored.instructions))
    except Exception:  # a method of a plug-in no longer installed
        return 0


def compare_pair(runs: Sequence[Mapping[str, Any]], preferred: Sequence[int] = ()) -> tuple[int, int] | None:
    """The two runs the compare dialog proposes: the preferred ones (else the newest), completed by the newest
    other run of the same task (comparing methods is the usual question). None with fewer than two runs."""
    if len(runs) < 2:
        return None
    ids = [r["id"] for r in runs]
    task = {r["id"]: r["task"] for r in runs}
    picks = list(dict.fromkeys(p for p in preferred if p in ids)) or ids[:1]
    picks += sorted((i for i in ids if i not in picks), key=lambda i: (task[i] != task[picks[0]], -i))
    return picks[0], picks[1]

