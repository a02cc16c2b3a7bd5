"""The engine's wire format: JSON lines over stdio.

A request is ``{"id": N, "method": "...", "params": {...}}``; its response ``{"id": N, "result": ...}`` or
``{"id": N, "error": {"type", "problem", "fix"}}``; a notification (no id) ``{"method": "event", "params": {...}}``
carries a run event (:mod:`engine.events`). One JSON object per line, UTF-8. stdout carries nothing else.
Kept stdlib-only: the client side (in the TUI process) imports it.
"""

from __future__ import annotations

import json
from typing import Any

METHODS = ("start_run", "resume_run", "cancel_run", "rerank", "status", "shutdown")


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict[str, Any]:
    msg = json.loads(line)
    if not isinstance(msg, dict):
        raise ValueError("a protocol message must be a JSON object")
    return msg


def request(msg_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": msg_id, "method": method, "params": params or {}}


def response(msg_id: int, result: Any) -> dict[str, Any]:
    return {"id": msg_id, "result": result}


def error(msg_id: int | None, problem: str, fix: str | None = None, kind: str = "IZError") -> dict[str, Any]:
    return {"id": msg_id, "error": {"type": kind, "problem": problem, "fix": fix}}


def notification(event: dict[str, Any]) -> dict[str, Any]:
    return {"method": "event", "params": event}
