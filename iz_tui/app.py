"""The Textual application: screens over one lazily started engine process and the local history.

Why it is shaped this way:
- The TUI must open fast, so nothing heavy is imported here: the history is read straight from SQLite (WAL, so
  reads never block the engine's writes) and the engine process is spawned only on the first action that needs
  it (a run or a rerank), then kept for the life of the app and closed on quit.
- One app factory, ``IZApp(history_path=..., engine_factory=...)``, serves the ``iz`` command and the tests.
- Engine events arrive through the client's callback on this event loop; the app keeps each run's events (so a
  screen that attaches late misses nothing) and posts them to the screens listening for that run.
- The app is the navigation layer: screens open one another through its ``open_*`` methods (typed through
  :class:`iz_tui.screens.base.BaseScreen`), so no screen imports another and only this module knows them all.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message_pump import MessagePump
from textual.screen import Screen

from engine.config import Config, load_config
from engine.errors import IZError
from engine.wire.client import EngineClient
from engine.wire.events import Event
from iz_tui.messages import EngineEvent, HistoryChanged
from iz_tui.requests import RunRequest, compare_pair

if TYPE_CHECKING:  # sqlite-utils costs ~0.1 s to import: not before the first screen (see _import_ahead)
    from engine.store import History
    from iz_tui.screens.history import HistoryScreen

#: Builds the engine client; the app passes the callback that must receive every event.
EngineFactory = Callable[[Callable[[Event], Any]], EngineClient]


def default_engine_factory(on_event: Callable[[Event], Any]) -> EngineClient:
    """The real engine: ``python -m engine serve`` as a child process."""
    return EngineClient(on_event=on_event)


class IZCommands(Provider):
    """Command palette entries for the main actions (ctrl+p)."""

    COMMANDS: tuple[tuple[str, str, str], ...] = (
        ("New run", "new_run", "Pick a task, a method and a budget, then start"),
        ("History", "history", "Browse every run and candidate"),
        ("Search instructions", "search", "Full-text search over every scored instruction"),
        ("Compare runs", "compare", "Best dev score over evaluations for two runs, side by side"),
        ("Side by side of two candidates", "side_by_side",
         "The two selected candidates' outputs per example (select them in the history with space)"),
        ("Sweeps", "sweeps", "Grids of runs (iz sweep): method x task tables of test scores, and their runs"),
        ("Rerank top 3 of the latest run", "rerank_top", "Re-score the 3 best candidates on the test split"),
        ("Export the latest run", "export", "Write the latest run as JSON or Markdown"),
        ("Help", "help", "Keys and screens"),
    )

    async def discover(self) -> Hits:
        for name, action, help_text in self.COMMANDS:
            yield DiscoveryHit(name, self._runner(action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in self.COMMANDS:
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), self._runner(action), help=help_text)

    def _runner(self, action: str) -> Callable[[], Any]:
        async def go() -> None:
            await self.app.run_action(action)

        return go


class IZApp(App[None]):
    """InstructZero for the terminal."""

    TITLE = "InstructZero"
    SUB_TITLE = "find the best instruction for a black-box LLM"
    CSS_PATH = "iz.tcss"
    COMMANDS = App.COMMANDS | {IZCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("h", "history", "History"),
        Binding("ctrl+n", "new_run", "New run", show=False),
    ]

    def __init__(
        self,
        history_path: Path | str | None = None,
        engine_factory: EngineFactory | None = None,
        config: Config | None = None,
    ) -> None:
        super().__init__()
        self.history_path = Path(history_path) if history_path else None
        self.engine_factory = engine_factory or default_engine_factory
        self._config = config
        self._history: History | None = None
        self._client: EngineClient | None = None
        self._client_lock: asyncio.Lock | None = None
        self._run_events: dict[int, list[Event]] = defaultdict(list)
        self._listeners: dict[int | None, list[MessagePump]] = defaultdict(list)

    # -- shared state -------------------------------------------------------------------------------------
    @property
    def history(self) -> History:
        """The history database, opened on first use (creating it if needed)."""
        if self._history is None:
            from engine.store import open_history

            self._history = open_history(self.history_path)
        return self._history

    @property
    def config(self) -> Config:
        """The user's configuration; a broken file is reported once and the defaults are used meanwhile."""
        if self._config is None:
            try:
                self._config = load_config()
            except IZError as exc:
                self.notify(f"{exc.problem}\nfix: {exc.fix}", title="Configuration", severity="error", timeout=15)
                self._config = Config()
        return self._config

    def on_ready(self) -> None:
        """Move everything alive once the first screen is up (modules, classes, the home screen: ~80,000 objects)
        out of the cyclic garbage collector's reach.

        Each screen a person opens and closes leaves thousands of widgets, styles and render caches in reference
        cycles, which only the collector's oldest generation frees; that collection walks every tracked object,
        the start-up ones included, and took 250-300 ms here: every third or fourth history opening took 500-650
        ms instead of 200-370, and a live run's screen froze as long (``bench/history_scale.py``). Frozen, the
        start-up objects are never walked again (they live as long as the app anyway) and the collections only
        walk what was made since. Once a process: a second app in the same process (the test suite runs dozens)
        would freeze the first one's leftovers with it, for good."""
        if gc.get_freeze_count() == 0:
            gc.freeze()
        self.set_timer(self.IMPORT_AHEAD_S, self._import_ahead)

    #: Seconds after the first screen is up before the history's modules are imported in the background.
    IMPORT_AHEAD_S = 0.3
    #: What the first opening of the history (sqlite-utils brings numpy: ~0.12 s here) and of a run's screen (its
    #: plot: ~0.035 s) would import otherwise.
    IMPORT_AHEAD = ("engine.store", "iz_tui.screens.history", "iz_tui.screens.run")

    def _import_ahead(self) -> None:
        """Import what the history and a run's screen need on a background thread, so the first ``h`` after
        start does not wait for it (about 330 -> 155 ms on the 100,000-candidate store): the first screen stays
        light and quick to show, and the imports run while the person reads it, without holding the event loop.
        A key pressed before they finish waits for them on Python's import lock, as it would have waited for its
        own import. An import that fails is left for the place that needs it, which reports it."""

        def run() -> None:
            for name in self.IMPORT_AHEAD:
                try:
                    importlib.import_module(name)
                except Exception:
                    continue

        threading.Thread(target=run, name="iz-import-ahead", daemon=True).start()

    def get_default_screen(self) -> Screen[Any]:
        from iz_tui.screens.home import HomeScreen

        return HomeScreen()

    # -- the engine ---------------------------------------------------------------------------------------
    async def engine(self) -> EngineClient:
        """The engine client, started on first use. Raises :class:`IZError` if the engine died earlier."""
        if self._client_lock is None:
            self._client_lock = asyncio.Lock()
        async with self._client_lock:
            if self._client is not None and not self._client.alive and self._client.proc is not None:
                dead = self._client
                self._client = None
                if dead.dead is not None:
                    self.notify(f"the engine had stopped ({dead.dead.problem.splitlines()[0]}); starting a new one",
                                severity="warning")
            if self._client is None:
                self._client = self.engine_factory(self._engine_callback)
                await self._client.start()
            return self._client

    @property
    def engine_running(self) -> bool:
        return self._client is not None and self._client.alive

    def _engine_callback(self, event: Event) -> None:
        """Called by the client on this loop for every engine event: remember it and forward it."""
        self._run_events[event.run_id].append(event)
        for target in (*self._listeners.get(event.run_id, ()), *self._listeners.get(None, ())):
            target.post_message(EngineEvent(event))

    def listen(self, target: MessagePump, run_id: int | None = None, replay: bool = True) -> None:
        """Send ``target`` the events of ``run_id`` (None: every run), replaying those it missed. Listening again
        (a run screen resuming its run) does not double the events it gets."""
        if target not in self._listeners[run_id]:
            self._listeners[run_id].append(target)
        if replay and run_id is not None:
            for event in self._run_events.get(run_id, ()):
                target.post_message(EngineEvent(event))

    def unlisten(self, target: MessagePump) -> None:
        for targets in self._listeners.values():
            while target in targets:
                targets.remove(target)

    async def close_engine(self) -> None:
        """Shut the engine down (it cancels its runs, which stay resumable, and stops the embedded server)."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def action_quit(self) -> None:
        """Say so while the engine stops (it takes a second or two with the embedded server), then exit."""
        if self.engine_running:
            self.notify("stopping the engine… (unfinished runs stay resumable)", title="Quitting")
            await asyncio.sleep(0.05)  # let the notification paint
            await self.close_engine()
        self.exit()

    async def on_unmount(self) -> None:
        await self.close_engine()
        if self._history is not None:
            self._history.close()
            self._history = None

    # -- helpers screens share ----------------------------------------------------------------------------
    def history_changed(self, candidate_ids: Sequence[int] = ()) -> None:
        """Tell every screen on the stack that marks or scores changed."""
        for screen in self.screen_stack:
            screen.post_message(HistoryChanged(list(candidate_ids)))

    def copy_text(self, text: str, what: str = "instruction") -> None:
        """Copy to the clipboard two ways: OSC 52 through the terminal, and the system clipboard when there is one."""
        self.copy_to_clipboard(text)
        system = False
        try:
            import pyperclip

            pyperclip.copy(text)
            system = True
        except Exception:  # no clipboard tool (headless, SSH): OSC 52 alone may still reach the local terminal
            pass
        where = "clipboard" if system else "terminal clipboard (OSC 52; no system clipboard found)"
        self.notify(f"copied the {what} to the {where}", title="Copied")

    def export(self, path: Path | str, fmt: str, *, run_id: int | None = None,
               candidate_ids: Sequence[int] | None = None) -> Path | None:
        """Write a run or chosen candidates as JSON or Markdown; say where (or why not) in a notification."""
        from engine.export import export_data, to_json, to_markdown

        target = Path(path).expanduser()
        if not target.is_absolute():
            target = Path.cwd() / target
        try:
            data = export_data(self.history, run_id=run_id, candidate_ids=list(candidate_ids or []) or None)
            text = to_json(data) if fmt == "json" else to_markdown(data)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except IZError as exc:
            self.notify(f"{exc.problem}\nfix: {exc.fix}", title="Export failed", severity="error")
            return None
        except (OSError, ValueError) as exc:
            self.notify(f"cannot write {target}: {exc}", title="Export failed", severity="error")
            return None
        n = len(data["candidates"])
        self.notify(f"wrote {n} candidate{'s' if n != 1 else ''} to {target}", title="Exported")
        return target

    def latest_run_id(self) -> int | None:
        runs = self.history.runs(limit=1)
        return runs[0]["id"] if runs else None

    # -- navigation: screens open each other through these, never by importing each other ----------------
    def open_home(self) -> None:
        """Back to the home screen (a new run), closing whatever is above it."""
        from iz_tui.screens.home import HomeScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, HomeScreen):
            self.pop_screen()

    def open_run(self, target: RunRequest | int) -> None:
        """The live run screen: start a new run from a request, or resume a recorded run by its id."""
        from iz_tui.screens.run import RunScreen

        if isinstance(target, RunRequest):
            self.push_screen(RunScreen(target))
        else:
            self.push_screen(RunScreen(resume_run_id=target))

    def open_history(self, run_id: int | None = None, candidate_id: int | None = None) -> HistoryScreen:
        """The history (the one on the stack, else a new one), optionally on one run and one of its candidates."""
        from iz_tui.screens.history import HistoryScreen

        screen = next((s for s in reversed(self.screen_stack) if isinstance(s, HistoryScreen)), None)
        if screen is None:
            screen = HistoryScreen()
            self.push_screen(screen)
        else:
            while self.screen is not screen:
                self.pop_screen()
        if run_id is not None:
            screen.show_run(run_id, candidate_id)
        return screen

    def open_candidate(self, candidate_id: int) -> None:
        """One candidate in full: scores and per-example outputs."""
        from iz_tui.screens.detail import CandidateScreen

        self.push_screen(CandidateScreen(candidate_id))

    def open_compare(self, preferred: Sequence[int] = ()) -> None:
        """Ask which two runs (preferring those given, else the two newest), then put them side by side."""
        from iz_tui.screens.compare import CompareScreen
        from iz_tui.screens.modals import CompareModal

        runs = self.history.runs(limit=200)
        pair = compare_pair(runs, preferred)
        if pair is None:
            self.notify("comparing needs two runs: start another one first", severity="warning")
            return

        def go(result: tuple[int, int] | None) -> None:
            if result is not None:
                self.push_screen(CompareScreen(*result))

        self.push_screen(CompareModal(runs, *pair), go)

    def open_side_by_side(self, a: int, b: int) -> None:
        """Two candidates' per-example outputs, row by row, the differences marked."""
        from iz_tui.screens.side_by_side import SideBySideScreen

        self.push_screen(SideBySideScreen(a, b))

    def open_sweeps(self) -> None:
        """Every sweep (grids of runs from `iz sweep`), newest first, following a sweep that runs elsewhere."""
        from iz_tui.screens.sweeps import SweepsScreen

        screen = next((s for s in reversed(self.screen_stack) if isinstance(s, SweepsScreen)), None)
        if screen is None:
            self.push_screen(SweepsScreen())
        else:
            while self.screen is not screen:
                self.pop_screen()

    def open_sweep(self, sweep_id: int) -> None:
        """One sweep: its method x task table of test scores and its cells (each opens its run)."""
        from iz_tui.screens.sweeps import SweepScreen

        self.push_screen(SweepScreen(sweep_id))

    # -- actions (keys and the command palette) -----------------------------------------------------------
    def action_help(self) -> None:
        from iz_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_new_run(self) -> None:
        self.open_home()

    def action_history(self, run_id: int | None = None, candidate_id: int | None = None) -> None:
        self.open_history(run_id, candidate_id)

    def action_search(self) -> None:
        screen = self.open_history()
        screen.call_after_refresh(screen.action_focus_search)

    def action_compare(self) -> None:
        self.open_compare()

    def action_sweeps(self) -> None:
        self.open_sweeps()

    def action_side_by_side(self) -> None:
        """The history's two selected candidates side by side (the history says what to do otherwise)."""
        screen = self.open_history()
        screen.call_after_refresh(screen.action_side_by_side)

    def action_rerank_top(self) -> None:
        self._on_latest_run("action_rerank")

    def action_export(self) -> None:
        self._on_latest_run("action_export")

    def _on_latest_run(self, action: str) -> None:
        """Open the history on the newest run, then run a history action there (palette shortcuts)."""
        run_id = self.latest_run_id()
        if run_id is None:
            self.notify("no runs yet: start one first", severity="warning")
            return
        screen = self.open_history(run_id)
        screen.call_after_refresh(getattr(screen, action))


def run_app(history_path: Path | str | None = None) -> None:
    """Entry point of ``iz`` with no sub-command."""
    IZApp(history_path=history_path).run()
