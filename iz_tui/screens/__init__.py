"""The TUI's screens: home (start a run), run (live progress), history, detail, compare, and small modals."""
