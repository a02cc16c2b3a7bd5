"""Two runs side by side: best dev score over evaluations (one line each) and their final scores.

This is the question a person asks after trying a method: did InstructZero beat random soft prompts or APE on
the same budget, and does the dev gain hold on the test split?
"""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from iz_tui.formatting import best_so_far, dedupe_top, fmt_score, short
from iz_tui.screens.base import BaseScreen
from iz_tui.widgets.footer import QuietFooter
from iz_tui.widgets.plot import BestPlot


class CompareScreen(BaseScreen[None]):
    """Run A vs run B."""

    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, run_a: int, run_b: int) -> None:
        super().__init__()
        self.run_ids = (run_a, run_b)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="cmp-title")
        yield BestPlot("best dev score over evaluations", id="cmp-plot")
        yield DataTable(id="cmp-table", cursor_type="row", show_cursor=False)
        yield QuietFooter()

    def on_mount(self) -> None:
        h = self.history
        table = self.query_one("#cmp-table", DataTable)
        for label, key, width in (("run", "run", 3), ("task", "task", 12), ("method", "method", 12),
                                  ("evals", "evals", 5), ("best dev", "dev", 8), ("test", "test", 5),
                                  ("best rerank", "rerank", 11)):
            table.add_column(label, key=key, width=width)
        series = []
        bests = []
        for rid in self.run_ids:
            run = h.run(rid)
            cands = h.candidates(rid, status="scored")
            ys = best_so_far(c["dev_score"] for c in cands)
            xs = [float(i) for i in range(1, len(ys) + 1)]
            label = f"#{rid} {run['method']}"
            series.append((label, xs, ys))
            reranks = [c["rerank_score"] for c in cands if c.get("rerank_score") is not None]
            table.add_row(str(rid), short(run["task"], 12), run["method"], str(run["evaluations"]),
                          fmt_score(run.get("best_dev_score")), fmt_score(run.get("test_score")),
                          fmt_score(max(reranks)) if reranks else "-", key=str(rid))
            top = dedupe_top(cands, 1)
            bests.append(f"[b]#{rid}[/] best: {escape(short(run.get('best_instruction') or '-', 70))}"
                         if top else f"[b]#{rid}[/] nothing scored")
        self.query_one("#cmp-plot", BestPlot).set_series(series)
        a, b = (h.run(r) for r in self.run_ids)
        same = "same task" if a["task"] == b["task"] else "[yellow]different tasks[/]"
        self.query_one("#cmp-title", Static).update(
            f"[b]run {a['id']}[/] ({a['method']}) vs [b]run {b['id']}[/] ({b['method']}) · {same}\n"
            + "\n".join(bests))

    def action_back(self) -> None:
        self.app.pop_screen()
