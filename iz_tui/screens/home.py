"""Home: pick a task, a method, an endpoint and a budget, then start a run.

The form's values become a :class:`iz_tui.requests.RunRequest` (presets, checks and the budget arithmetic live
there and in :class:`engine.config.RunSettings`); the app opens the run screen for it.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Header, Input, Label, OptionList, Select, Static, TextArea
from textual.widgets.option_list import Option

from engine.errors import IZError
from engine.methods import METHOD_HELP, METHODS
from iz_tui.requests import (
    FIELDS,
    PRESET_LABELS,
    PRESETS,
    Budget,
    RunRequest,
    budget_line,
    build_request,
    parse_budget,
    parse_instructions,
    parse_max_cost,
    preset_of,
    takes_instructions,
)
from iz_tui.screens.base import BaseScreen
from iz_tui.screens.modals import ImportTaskModal
from iz_tui.widgets.footer import QuietFooter
from iz_tui.widgets.light_select import LightSelect


def models_line(cfg: Any) -> str:
    """Which models a run will use, in one line; when only the bundled 135M model is there, how to do better.

    Reads the catalog and the models folder only (a few stats), never a model: the TUI must open at once.
    """
    from rich.markup import escape

    from engine.models import catalog

    try:
        generator = (cfg.generator.model or "").strip() or catalog.effective_default("generator")
        profile = cfg.endpoints.get(cfg.default_endpoint)
        blackbox = profile.model if profile is not None and profile.embedded else None
    except Exception as exc:  # a broken config is reported by the run itself; the form must still open
        return f"[dim]models: {escape(str(exc).splitlines()[0])}[/]"
    weak = {"smollm2-135m", "smollm2-135m-instruct"}
    if not cfg.generator.model and generator in weak:
        want = sorted({catalog.DEFAULT_GENERATOR, catalog.DEFAULT_BLACKBOX})
        return ("[yellow]Using the bundled SmolLM2-135M, which writes generic instructions: "
                f"`iz models pull --default` gets {escape(' + '.join(want))} for far better ones.[/]")
    shown = f"generator [b]{escape(generator)}[/]"
    if blackbox:
        shown += f" · embedded black box [b]{escape(blackbox)}[/]"
    return f"[dim]{shown}[/]"


class HomeScreen(BaseScreen[None]):
    """Start a run."""

    BINDINGS = [
        Binding("ctrl+r", "start", "Start run"),
        Binding("i", "import_task", "Import task"),
        Binding("w", "app.sweeps", "Sweeps"),
        Binding("f2", "preset('quick')", "Quick", show=False),
        Binding("f3", "preset('paper')", "Paper", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._tasks: dict[str, Any] = {}
        self._setting_preset = False

    def compose(self) -> ComposeResult:
        cfg = self.app.config
        yield Header()
        with Horizontal(id="home-top"):
            yield OptionList(id="tasks")
            with VerticalScroll(id="task-preview-box"):
                yield Static("loading tasks…", id="task-preview")
        with Vertical(id="run-form"):
            with Horizontal(classes="form-row"):
                yield Label("Method", classes="form-label")
                yield LightSelect([(m, m) for m in METHODS], value=cfg.run.method, allow_blank=False, compact=True,
                             id="method")
                yield Label("Endpoint", classes="form-label")
                yield LightSelect([(n, n) for n in sorted(cfg.endpoints)], value=cfg.default_endpoint,
                             allow_blank=False, compact=True, id="endpoint")
            yield Static("", id="method-help")
            yield Static(models_line(cfg), id="models-line")
            with Horizontal(classes="form-row"):
                yield Label("Budget", classes="form-label")
                yield LightSelect([(label, key) for key, label in PRESET_LABELS.items()], value="quick",
                             allow_blank=False, compact=True, id="preset")
                yield Label("max $", classes="num-label")
                yield Input(placeholder="no cap", compact=True, id="max-cost",
                            tooltip="Stop the run once it has spent this many USD (needs the endpoint's prices)")
            with Horizontal(classes="form-row", id="numbers"):
                quick = PRESETS["quick"]
                for attr, label in FIELDS:
                    yield Label(label, classes="num-label")
                    yield Input(str(getattr(quick, attr)), type="integer", compact=True, id=f"num-{attr}",
                                classes="num")
            yield TextArea(id="manual", classes="hidden")
            with Horizontal(classes="form-row"):
                yield Button("Start ▶", variant="success", compact=True, id="start")
                yield Static("", id="estimate")
        yield QuietFooter()

    def on_mount(self) -> None:
        self.query_one("#task-preview-box").can_focus = False  # one tab stop fewer between the task and the form
        self.query_one("#manual", TextArea).border_title = "Instructions to score (one a line)"
        self.query_one("#tasks", OptionList).border_title = "Task"
        self._load_tasks()
        self._update_method_help()
        self._update_estimate()

    def _load_tasks(self) -> None:
        from engine.tasks import list_tasks

        options = self.query_one("#tasks", OptionList)
        try:
            tasks = list_tasks()
        except IZError as exc:
            self.query_one("#task-preview", Static).update(f"[b red]Cannot list tasks[/]\n{exc.problem}\n{exc.fix}")
            return
        self._tasks = {t.name: t for t in tasks}
        options.clear_options()
        options.add_options([Option(t.name if t.builtin else f"{t.name} (yours)", id=t.name) for t in tasks])
        if tasks:
            names = [t.name for t in tasks]
            options.highlighted = names.index(self._first_task(names))
            self._show_task(tasks[options.highlighted].name)
        else:
            self.query_one("#task-preview", Static).update("no tasks found: import one with `i` "
                                                           "(or `iz tasks import FILE`)")
        options.focus()

    def _first_task(self, names: list[str]) -> str:
        """The task the user last ran (the newest run in the history), else :data:`engine.recent.FIRST_TASK`, a
        built-in task where the default quick run shows the method's value; else the first listed."""
        from engine import paths
        from engine.recent import FIRST_TASK, last_task

        path = getattr(self.app, "history_path", None) or paths.history_db()
        for name in (last_task(path), FIRST_TASK):
            if name in names:
                return name
        return names[0]

    @property
    def selected_task(self) -> str | None:
        options = self.query_one("#tasks", OptionList)
        if options.highlighted is None:
            return None
        return options.get_option_at_index(options.highlighted).id

    @on(OptionList.OptionHighlighted, "#tasks")
    def _task_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self._show_task(event.option.id)
            self._update_estimate()

    @on(OptionList.OptionSelected, "#tasks")
    def _task_selected(self) -> None:
        self.query_one("#method", Select).focus()

    def _show_task(self, name: str) -> None:
        from rich.markup import escape

        t = self._tasks.get(name)
        if t is None:
            return
        kind = "built-in" if t.builtin else f"yours ({t.source})"
        demos = f" + {len(t.demos)} demos" if t.demos else ""
        lines = [f"[b]{escape(t.name)}[/]  ·  metric [b]{t.metric}[/]  ·  {len(t.examples)} examples{demos}  ·  {kind}",
                 escape(t.description or ""), "", "[dim]examples[/]"]
        for ex in t.examples[:4]:
            answers = " | ".join(ex.answers[:2])
            lines.append(f"  {escape(ex.input[:40])} [dim]→[/] {escape(answers[:30])}")
        lines += ["", *self._prompt_preview(t)]
        self.query_one("#task-preview", Static).update("\n".join(lines))
        self.query_one("#task-preview-box").border_title = "Preview"

    def _prompt_preview(self, t: Any) -> list[str]:
        """The exact prompt the task's first example produces on the chosen endpoint (the task's api wins), and
        the task's own sampling settings: what a person checks before paying for a run."""
        from rich.markup import escape

        from engine.tasks.model import PREVIEW_INSTRUCTION

        api = t.api
        if not api:
            profile = self.app.config.endpoints.get(str(self.query_one("#endpoint", Select).value))
            api = profile.api if profile is not None else "chat"
        lines = [f"[dim]prompt for example 1 ({api})[/]"]
        lines += [f"  {escape(line)}" for line in t.render(PREVIEW_INSTRUCTION, t.examples[0], api).text().splitlines()]
        lines += [f"[dim]{escape(line)}[/]" for line in t.settings_lines()]
        return lines

    @on(Select.Changed, "#endpoint")
    def _endpoint_changed(self) -> None:
        """The prompt preview follows the endpoint: chat and completions prompts differ."""
        if self.selected_task:
            self._show_task(self.selected_task)
        self._update_estimate()

    def action_import_task(self) -> None:
        """Import a data file (or an induce + execute pair) as a user task, then select it."""
        self.app.push_screen(ImportTaskModal(), self._imported)

    def _imported(self, task: Any) -> None:
        if task is None:
            return
        self._load_tasks()
        options = self.query_one("#tasks", OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        if task.name in ids:
            options.highlighted = ids.index(task.name)
            self._show_task(task.name)
            self._update_estimate()
        extra = [f"+ {len(task.demos)} demos (shown to the generator only)"] if task.demos else []
        extra += [f"note: {n}" for n in task.notes]
        self.notify("\n".join([f"imported {task.name} ({len(task.examples)} examples)", *extra]),
                    title="Task imported", timeout=10)

    # -- form ---------------------------------------------------------------------------------------------
    @on(Select.Changed, "#method")
    def _method_changed(self) -> None:
        manual = takes_instructions(str(self.query_one("#method", Select).value))
        self.query_one("#manual", TextArea).set_class(not manual, "hidden")
        self.query_one("#numbers").set_class(manual, "hidden")
        self.query_one("#preset", Select).disabled = manual
        self._update_method_help()
        self._update_estimate()

    def _update_method_help(self) -> None:
        method = str(self.query_one("#method", Select).value)
        self.query_one("#method-help", Static).update(f"[dim]{METHOD_HELP.get(method, '')}[/]")

    @on(Select.Changed, "#preset")
    def _preset_changed(self, event: Select.Changed) -> None:
        if event.value in PRESETS:
            self.action_preset(str(event.value))

    def action_preset(self, name: str) -> None:
        """Fill the numbers from a preset (editing a number afterwards switches to "custom")."""
        budget = PRESETS[name]
        self._setting_preset = True
        try:
            for attr, _ in FIELDS:
                self.query_one(f"#num-{attr}", Input).value = str(getattr(budget, attr))
            self.query_one("#preset", Select).value = name
        finally:
            self.call_after_refresh(self._preset_done)
        self._update_estimate()

    def _preset_done(self) -> None:
        self._setting_preset = False

    @on(Input.Changed, ".num")
    def _number_changed(self) -> None:
        if not self._setting_preset:
            match = preset_of(self._budget())
            preset = self.query_one("#preset", Select)
            if preset.value != match:
                preset.value = match
        self._update_estimate()

    @on(TextArea.Changed, "#manual")
    @on(Input.Changed, "#max-cost")
    def _manual_changed(self) -> None:
        self._update_estimate()

    def _budget(self) -> Budget | None:
        return parse_budget({attr: self.query_one(f"#num-{attr}", Input).value for attr, _ in FIELDS})

    def _instructions(self) -> list[str]:
        return parse_instructions(self.query_one("#manual", TextArea).text)

    def _max_cost(self) -> float | None | str:
        return parse_max_cost(self.query_one("#max-cost", Input).value)

    def _cost_estimate(self, method: str, budget: Budget | None, n_instructions: int) -> Any:
        """The run's estimated calls, tokens and money (engine.cost), or None when it cannot be worked out yet."""
        task = self._tasks.get(self.selected_task or "")
        profile = self.app.config.endpoints.get(str(self.query_one("#endpoint", Select).value))
        if task is None or profile is None:
            return None
        from engine.cost import estimate_run

        values: dict[str, Any] = {"method": method}
        if budget is not None and budget.problem() is None:
            values.update(budget.settings())
        elif not takes_instructions(method):
            return None
        max_cost = self._max_cost()
        if isinstance(max_cost, float):
            values["budget_cost"] = max_cost
        if takes_instructions(method):
            values = {k: v for k, v in values.items() if k in ("method", "n_dev", "n_test", "budget_cost")}
        try:
            settings = self.app.config.run.with_overrides(values)
            return estimate_run(task, settings, profile, n_instructions=n_instructions)
        except IZError:  # a task too small for these numbers: the form says so when starting
            return None

    def _update_estimate(self) -> None:
        method = str(self.query_one("#method", Select).value)
        budget, n = self._budget(), len(self._instructions())
        line = budget_line(method, budget, n, self._cost_estimate(method, budget, n))
        if isinstance(self._max_cost(), str):
            line += " · [red]max $: a number[/]"
        self.query_one("#estimate", Static).update(line)

    def validate(self) -> RunRequest | str:
        """The run to start, or what is wrong with the form (said in words, not a traceback)."""
        task = self.selected_task
        method = str(self.query_one("#method", Select).value)
        endpoint = str(self.query_one("#endpoint", Select).value)
        known = self._tasks.get(task) if task else None
        max_cost = self._max_cost()
        if isinstance(max_cost, str):
            return max_cost
        profile = self.app.config.endpoints.get(endpoint)
        if max_cost is not None and profile is not None and profile.prices is None:
            return (f"max $ needs the prices of endpoint {endpoint}: set price_input and price_output (USD per "
                    f"million tokens) under [endpoints.{endpoint}] in the configuration")
        return build_request(task, method, endpoint, self._budget(), self._instructions(),
                             n_examples=len(known.examples) if known is not None else None,
                             # a task with its own demos (demos.jsonl) does not take them from its examples
                             n_demos=0 if known is not None and known.demos else self.app.config.run.n_demos,
                             max_cost=max_cost)

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        request = self.validate()
        if isinstance(request, str):
            self.notify(request, title="Cannot start", severity="warning")
            return
        self.app.open_run(request)
