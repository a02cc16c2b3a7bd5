"""The SQLite history store (see :mod:`engine.store.history`)."""

from engine.store.history import History, open_history

__all__ = ["History", "open_history"]
