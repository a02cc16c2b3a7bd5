"""The help screen (`?`): every key, screen by screen, since the footer cannot show them all at 80 columns."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from iz_tui.requests import PRESETS

HELP = """\
# InstructZero — keys

**Everywhere**: `?` help · `h` history · `ctrl+p` command palette (new run, search, compare, rerank, export)
· `ctrl+n` new run · `q` quit (the engine is stopped; unfinished runs stay resumable)

**Home** (start a run): `↑↓` pick a task · `tab` move through method, endpoint, budget ·
`F2` quick preset ({quick} evaluations, about a minute) · `F3` paper preset ({paper} evaluations) · `ctrl+r` start · `i` import a task · `w` sweeps

**Run** (live): `x` cancel · `u` resume a cancelled or failed run · `o` open it in the history ·
`c` copy the best instruction · `esc` back (the run goes on)

**History**: `/` search (bm25 full-text) · `space` select · `enter` details · `s` star · `n` note ·
`r` rerank (selected, or the top k of a run) · `e` export JSON/Markdown · `c` copy instruction ·
`v` compare two runs · `b` side by side (two selected candidates, example by example) ·
`d` list in-run repeats too (dim, `= #original`: they reuse its score) ·
`g` group identical instructions (`×` count, best scores; `enter` opens the best) ·
`o` cycle the sort order · `a` clear the selection · `u` resume an interrupted run · `w` sweeps · `esc` back

**Details**: `s` star · `n` note · `c` copy · `esc` back

**Compare**: `esc` back

**Side by side**: `≠` scored differently · `~` same score, other words · `?` only one was scored on it ·
`f` only the differences · `esc` back

**Sweeps** (grids of runs from `iz sweep`, updated live while one runs): `enter` a sweep's results · `esc` back

**Sweep**: test score per method and task (mean ±sd over seeds, each task's best in green; `(k/n)`: seeds
finished so far) and every cell · `enter`/`o` open the cell's run in the history · `f` only the failed cells ·
`c` copy the cell's best instruction · `esc` back

Scores: *dev* is what the optimiser saw; *test* is the held-out score of a run's best; *rerank* is the latest
re-score (test split, more examples or another endpoint).
""".format(quick=PRESETS["quick"].evaluations, paper=PRESETS["paper"].evaluations)


class HelpScreen(ModalScreen[None]):
    """Keys and screens."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
