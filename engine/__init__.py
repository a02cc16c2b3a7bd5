"""The headless core of InstructZero for the terminal.

Everything the TUI, the CLI and the tests do goes through this package. It must never import Textual, so the
engine can run as a plain subprocess (``python -m engine serve``) or inside a test without a terminal.
"""

__version__ = "0.1.0"
