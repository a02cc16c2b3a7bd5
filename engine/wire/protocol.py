"""The engine's wire format: JSON lines over stdio.

A request is ``{"id": N, "method": "...", "params": {...}}``; its response ``{"id": N, "result": ...}`` or
``{"id": N, "error": {"type", "problem", "fix"}}``; a notification (no id) ``{"method": "event", "params": {...}}``
carries a run event (:mod:`engine.wire.events`). One JSON object per line, UTF-8. stdout carries nothing else.

An error's ``type`` is the name of an :class:`~engine.errors.IZError` class, which the client raises again
(:meth:`IZError.from_dict`), so an error keeps its type across the wire. Which methods exist, with which
parameters, is :mod:`engine.wire.dispatch`'s business. Kept stdlib-only: the client side (in the TUI process)
imports it.
"""

from __future__ import annotations

import json
from typing import Any

from engine.errors import IZError

#: The method name of a notification that carries a run event.
EVENT = "event"


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict[str, Any]:
    msg = json.loads(line)
    if not isinstance(msg, dict):
        raise ValueError("a protocol message must be a JSON object")
    return msg


def request(msg_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": msg_id, "method": method, "params": params or {}}


def response(msg_id: int | None, result: Any) -> dict[str, Any]:
    return {"id": msg_id, "result": result}


def error(msg_id: int | None, problem: str, fix: str | None = None, kind: str = "IZError") -> dict[str, Any]:
    """An error answer; ``kind`` is the wire name of the error's class (see :meth:`IZError.from_dict`)."""
    return {"id": msg_id, "error": {"type": kind, "problem": problem, "fix": fix}}


def error_from(msg_id: int | None, exc: IZError) -> dict[str, Any]:
    """The error answer for an IZError, carrying its class name so the client raises the same class."""
    return {"id": msg_id, "error": exc.to_dict()}


def notification(event: dict[str, Any]) -> dict[str, Any]:
    return {"method": EVENT, "params": event}
