"""Reading a task's files: one home for the strict UTF-8 read every reader of task files shares (the loader, the
importers and the user metrics), so none of them imports another for it."""

from __future__ import annotations

from pathlib import Path

from engine.errors import TaskError


def read_utf8(path: Path) -> str:
    """Read a text file strictly as UTF-8 (a BOM is tolerated), naming the line of the first bad byte."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TaskError(f"cannot read {path}: {exc.strerror or exc}", "check the path and its permissions") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TaskError(
            f"{path}, line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`)",
        ) from None
