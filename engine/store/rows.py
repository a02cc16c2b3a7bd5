"""How values sit in the store's rows: timestamps, and JSON columns (``NAME_json``) decoded for callers."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _decoded(row: dict[str, Any], *names: str) -> dict[str, Any]:
    """A row with its ``NAME_json`` columns decoded and handed out as ``NAME`` (callers never see JSON text)."""
    row = dict(row)
    for name in names:
        if f"{name}_json" in row:
            row[name] = _loads(row.pop(f"{name}_json"))
    return row
