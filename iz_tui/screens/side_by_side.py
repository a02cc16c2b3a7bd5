"""Two candidates side by side: per example, the input, the expected answers and what each one's instruction made
the black box answer, with the rows where they differ marked.

Two instructions with the same mean can win on different examples; a person choosing between them (or writing a
third) needs to see where: which examples one gets right and the other not, and how the wording of the answers
changes. Examples are matched by split and input, so two runs of a task with the same examples line up; the test
split is shown when both candidates were scored on it.
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
from iz_tui.screens.base import BaseScreen
from iz_tui.widgets.footer import QuietFooter

#: The splits shown, in order: dev (every scored candidate has it) and test (where both have test outputs).
SPLITS = ("dev", "test")


def _score_text(o: dict[str, Any] | None, other: dict[str, Any] | None) -> Text:
    """A score, green when it beats the other side's, red when it loses; "-" where the example is missing."""
    if o is None:
        return Text("-", style="dim")
    style = ""
    if other is not None and o["score"] is not None and other["score"] is not None and o["score"] != other["score"]:
        style = "bold green" if o["score"] > other["score"] else "red"
    return Text(fmt_score(o["score"]), style=style)


class SideBySideScreen(BaseScreen[None]):
    """Candidate A vs candidate B, example by example."""

    BINDINGS = [
        Binding("f", "only_differences", "Only differences"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.ids = (a, b)
        self.cands: tuple[dict[str, Any], ...] = ()
        #: One per example: split, input, answers, a / b (that candidate's output row, or None), differs, mark.
        self.rows: list[dict[str, Any]] = []
        self.only_differences = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="sbs-head")
        yield DataTable(id="sbs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="sbs-row")
        yield QuietFooter()

    def on_mount(self) -> None:
        table = self.query_one("#sbs-table", DataTable)
        # The two outputs share what the fixed columns leave (cell padding 2 a column, the scrollbar 2).
        out_w = max(12, (self.app.size.width - 40 - 2 * 8 - 2) // 2)
        for label, key, width in (("≠", "mark", 1), ("split", "split", 5), ("input", "input", 14),
                                  ("answer", "answer", 10), ("A", "sa", 5), ("A output", "oa", out_w),
                                  ("B", "sb", 5), ("B output", "ob", out_w)):
            table.add_column(label, key=key, width=width)
        self.load()
        table.focus()

    # -- the data -----------------------------------------------------------------------------------------
    def _outputs(self, c: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """A candidate's outputs by split; an in-run repeat has none of its own: its original's are its."""
        outputs = self.history.outputs(c["id"])
        if not outputs and c.get("duplicate_of"):
            outputs = self.history.outputs(c["duplicate_of"])
        by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for o in outputs:
            if o["split"] in by_split:
                by_split[o["split"]].append(o)
        return by_split

    def load(self) -> None:
        h = self.history
        self.cands = tuple(h.candidate(cid) for cid in self.ids)
        outs = [self._outputs(c) for c in self.cands]
        rows: list[dict[str, Any]] = []
        for split in SPLITS:
            if split != "dev" and not (outs[0][split] and outs[1][split]):
                continue
            # Matched by input (the latest output wins when a split was scored twice), in A's order then B's.
            a = {o["input"]: o for o in outs[0][split]}
            b = {o["input"]: o for o in outs[1][split]}
            for key in [*a, *(k for k in b if k not in a)]:
                oa, ob = a.get(key), b.get(key)
                if oa is None or ob is None:
                    mark, differs = "?", True
                elif oa["score"] != ob["score"]:
                    mark, differs = "≠", True
                elif (oa["output"] or "").strip() != (ob["output"] or "").strip():
                    mark, differs = "~", True
                else:
                    mark, differs = "", False
                answers = (oa or ob or {}).get("answers") or []
                rows.append({"split": split, "input": key, "answers": answers, "a": oa, "b": ob,
                             "differs": differs, "mark": mark})
        self.rows = rows
        self._show_head()
        self._fill()

    def _show_head(self) -> None:
        lines = []
        for label, c in zip("AB", self.cands, strict=True):
            test = f" · test {fmt_score(c['test_score'])}" if c.get("test_score") is not None else ""
            dup = f" · repeats #{c['duplicate_of']}" if c.get("duplicate_of") else ""
            lines.append(f"[b]{label}[/] #{c['id']} · run {c['run_id']} {c['method']} · {escape(c['task'])} · "
                         f"dev [b]{fmt_score(c['dev_score'])}[/]{test}{dup}")
            lines.append(f"  [green]{escape(short(c['instruction'], 150))}[/]")
        for split in SPLITS:
            both = [r for r in self.rows if r["split"] == split and r["a"] and r["b"]]
            if not both:
                continue
            mean_a = sum(r["a"]["score"] or 0 for r in both) / len(both)
            mean_b = sum(r["b"]["score"] or 0 for r in both) / len(both)
            n_diff = sum(1 for r in both if r["mark"] == "≠")
            lines.append(f"{split}: {len(both)} examples in common · mean A {fmt_score(mean_a)} vs B "
                         f"{fmt_score(mean_b)} · [b yellow]{n_diff} scored differently[/] (≠; ~ same score, "
                         f"other words)")
        if not any(r["a"] and r["b"] for r in self.rows):
            a, b = self.cands
            why = "different tasks" if a["task"] != b["task"] else "different examples"
            lines.append(f"[yellow]no examples in common ({why})[/]: ? marks each side's own")
        self.query_one("#sbs-head", Static).update("\n".join(lines))

    def _fill(self) -> None:
        table = self.query_one("#sbs-table", DataTable)
        table.clear()
        for i, r in enumerate(self.rows):
            if self.only_differences and not r["differs"]:
                continue
            oa, ob = r["a"], r["b"]
            table.add_row(
                Text(r["mark"], style="bold yellow" if r["mark"] == "≠" else "yellow"),
                r["split"],
                Text(short(r["input"], 60)),
                Text(short(" | ".join(r["answers"]), 40)),
                _score_text(oa, ob),
                Text(short(oa["output"] or "", 200)) if oa else Text("—", style="dim"),
                _score_text(ob, oa),
                Text(short(ob["output"] or "", 200)) if ob else Text("—", style="dim"),
                key=str(i),
            )
        table.border_title = (f"{table.row_count} differing examples" if self.only_differences
                              else f"{table.row_count} examples")
        self._show_row()

    @on(DataTable.RowHighlighted, "#sbs-table")
    def _show_row(self) -> None:
        """The highlighted example in full: the table cuts long outputs, and the outputs are the point."""
        table = self.query_one("#sbs-table", DataTable)
        box = self.query_one("#sbs-row", Static)
        if table.row_count == 0:
            box.update("[dim]no differing examples[/]" if self.only_differences else "[dim]no outputs stored[/]")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        r = self.rows[int(key or 0)]

        def out(o: dict[str, Any] | None) -> str:
            return escape(short(o["output"] or "", 110)) if o else "[dim]not scored on this example[/]"

        box.update(f"[dim]input:[/] {escape(short(r['input'], 100))}  [dim]answer:[/] "
                   f"{escape(short(' | '.join(r['answers']), 40))}\n"
                   f"[b]A[/] {fmt_score(r['a']['score']) if r['a'] else '-'}: {out(r['a'])}\n"
                   f"[b]B[/] {fmt_score(r['b']['score']) if r['b'] else '-'}: {out(r['b'])}")

    # -- keys ---------------------------------------------------------------------------------------------
    def action_only_differences(self) -> None:
        self.only_differences = not self.only_differences
        self._fill()

    def action_back(self) -> None:
        self.app.pop_screen()
