"""One candidate in full: its instruction, every score it got, and what the black box answered per example.

Seeing the per-example outputs is how a person learns *why* an instruction scored as it did (the model answered
in a sentence, the answer was right but the metric was exact match...), which no single number says.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from iz_tui.formatting import fmt_score, short
from iz_tui.messages import HistoryChanged
from iz_tui.screens.base import BaseScreen
from iz_tui.screens.modals import NoteModal
from iz_tui.widgets.footer import QuietFooter


class CandidateScreen(BaseScreen[None]):
    """Details of one candidate."""

    BINDINGS = [
        Binding("s", "star", "Star"),
        Binding("n", "note", "Note"),
        Binding("c", "copy", "Copy"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, candidate_id: int) -> None:
        super().__init__()
        self.candidate_id = candidate_id
        self.cand: dict[str, Any] = {}
        self._outputs: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="detail-head")
        yield Static("", id="detail-instruction")
        yield Static("", id="detail-scores")
        yield DataTable(id="detail-outputs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="detail-output")
        yield QuietFooter()

    def on_mount(self) -> None:
        table = self.query_one("#detail-outputs", DataTable)
        for label, key, width in (("split", "split", 6), ("#", "i", 2), ("score", "score", 5),
                                  ("cache", "cache", 5), ("input", "input", 14), ("answer", "answer", 10),
                                  ("output", "output", None)):
            table.add_column(label, key=key, width=width)
        table.border_title = "Per-example outputs"
        self.load()
        table.focus()

    def load(self) -> None:
        c = self.history.candidate(self.candidate_id)
        self.cand = c
        star = " · [b yellow]★ starred[/]" if c.get("star") else ""
        dup = f" · same instruction as #{c['duplicate_of']}" if c.get("duplicate_of") else ""
        how = (" · [i]sampled[/] (its soft prompt's greedy text was already in the run)"
               if c.get("decoding") == "sampled" else "")
        self.query_one("#detail-head", Static).update(
            f"[b]candidate #{c['id']}[/] · {escape(c['task'])} · {c['method']} · run {c['run_id']} · "
            f"iteration {c['iteration']}{star}{dup}{how}")
        note = f"\n[dim]note:[/] {escape(c['note'])}" if c.get("note") else ""
        self.query_one("#detail-instruction", Static).update(f"[b green]{escape(c['instruction'])}[/]{note}")
        n_dev = len(c.get("scores") or [])
        lines = [f"dev {fmt_score(c['dev_score'])} on {n_dev} examples"
                 + (" (cached)" if c.get("cache_hit") else "")
                 + (" · [i]raced out[/]: after these it could no longer beat the run's best, so the rest were "
                    "not asked" if c.get("stopped_early") else "")]
        for s in self.history.scores(self.candidate_id):
            ep = s.get("endpoint") or {}
            lines.append(f"{s['kind']} {fmt_score(s['score'])} on {s['n_examples']} {s['split']} examples · "
                         f"{escape(str(ep.get('name', '?')))} ({escape(str(ep.get('model', '?')))}) · {s['metric']}")
        self.query_one("#detail-scores", Static).update("\n".join(lines))
        table = self.query_one("#detail-outputs", DataTable)
        table.clear()
        outputs = self.history.outputs(self.candidate_id)
        if not outputs and c.get("duplicate_of"):
            outputs = self.history.outputs(c["duplicate_of"])
        for o in outputs:
            score = o["score"]
            table.add_row(
                o["split"], str(o["example_index"]),
                Text(fmt_score(score), style="green" if score and score >= 1 else ("red" if not score else "")),
                "hit" if o["cache_hit"] else "",
                short(o["input"], 60), short(" | ".join(o["answers"]), 40), short(o["output"], 200),
                key=str(o["id"]),
            )
        self._outputs = {str(o["id"]): o for o in outputs}
        self._show_output()

    @on(DataTable.RowHighlighted, "#detail-outputs")
    def _show_output(self) -> None:
        """The highlighted example in full: the table cuts long outputs, and the output is the point."""
        table = self.query_one("#detail-outputs", DataTable)
        box = self.query_one("#detail-output", Static)
        if table.row_count == 0:
            box.update("[dim]no outputs stored for this candidate[/]")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        o = self._outputs.get(str(key))
        if o is None:
            return
        box.update(f"[dim]input:[/] {escape(short(o['input'], 150))}  [dim]answer:[/] "
                   f"{escape(short(' | '.join(o['answers']), 60))}\n[dim]output:[/] {escape(short(o['output'], 230))}")

    def action_star(self) -> None:
        star = not self.cand.get("star")
        if not self.save_mark(self.candidate_id, star=star):
            return
        self.notify(f"{'starred' if star else 'unstarred'} #{self.candidate_id}")
        self.load()
        self.app.history_changed([self.candidate_id])

    def action_note(self) -> None:
        def save(note: str | None) -> None:
            if note is None:
                return
            if not self.save_mark(self.candidate_id, note=note):
                return
            self.notify("note saved" if note else "note cleared")
            self.load()
            self.app.history_changed([self.candidate_id])

        self.app.push_screen(NoteModal(self.cand["instruction"], self.cand.get("note")), save)

    def action_copy(self) -> None:
        self.app.copy_text(self.cand["instruction"])

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_history_changed(self, message: HistoryChanged) -> None:
        if not message.candidate_ids or self.candidate_id in message.candidate_ids:
            self.load()
