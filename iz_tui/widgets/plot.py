"""The best-so-far plot: best dev score over evaluations, for one run (live) or several (compare)."""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot


class BestPlot(PlotextPlot):
    """A PlotextPlot that redraws whole series: runs are small (at most a few hundred points)."""

    def __init__(self, title: str = "best dev score", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._title = title
        self._series: list[tuple[str, list[float], list[float]]] = []

    def on_mount(self) -> None:
        self._draw()

    def set_series(self, series: Sequence[tuple[str, Sequence[float], Sequence[float]]]) -> None:
        """Replace every line: (label, xs, ys) each."""
        self._series = [(label, list(xs), list(ys)) for label, xs, ys in series]
        self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self._title)
        plt.ylim(0, 1.05)
        plt.yticks([0, 0.5, 1])
        xmax = 1
        for label, xs, ys in self._series:
            if xs:
                xmax = max(xmax, int(max(xs)))
                plt.plot(xs, ys, label=label if len(self._series) > 1 else None, marker="braille")
        plt.xlim(0, xmax + 0.5)
        step = max(1, -(-xmax // 5))
        plt.xticks(list(range(0, xmax + 1, step)))
        self.refresh()
