"""The protocol's methods, declared once: names and parameters here, handlers bound on the engine side.

Why: the server used to find a handler by name (``do_<method>``) against a tuple of names, and the client had its
own idea of each method's parameters, so a method changed on one side only failed at run time, far away. Now
:data:`METHODS` is the one list. The server binds its handlers to it with :meth:`Dispatcher.bind`, which refuses a
missing handler or one whose parameters differ from the declaration when the server is built (not when a request
arrives), and routes every request through :meth:`Dispatcher.dispatch`; the client checks every call with
:func:`check` before sending it. Adding a method means one :class:`Method` here and its handler in
:mod:`engine.server` (plus, for callers' comfort, a typed helper on the client).

A request that does not fit is answered with a :class:`~engine.errors.ProtocolError` naming what would fit.
Light on purpose (stdlib and :mod:`engine.errors`): the client side, in the TUI process, imports it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from engine.errors import ProtocolError

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    """One method of the protocol: what it is called and which parameters it takes."""

    name: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    summary: str = ""

    @property
    def params(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)

    def usage(self) -> str:
        """``rerank(candidate_ids, [split, n_examples, endpoint, model])``: for error messages."""
        opt = f"[{', '.join(self.optional)}]" if self.optional else ""
        return f"{self.name}({', '.join(p for p in (*self.required, opt) if p)})"

    def check(self, params: Mapping[str, Any]) -> None:
        """ProtocolError unless ``params`` gives every required parameter and nothing undeclared."""
        unexpected = sorted(set(params) - set(self.params))
        missing = [p for p in self.required if p not in params]
        if unexpected or missing:
            what = "; ".join(
                part for part in (
                    f"unexpected {', '.join(map(repr, unexpected))}" if unexpected else "",
                    f"missing {', '.join(map(repr, missing))}" if missing else "",
                ) if part
            )
            raise ProtocolError(f"bad parameters for {self.name}: {what}", f"it takes {self.usage()}")


#: Every method of the protocol, by name.
METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in (
    Method("start_run", ("task",), ("settings", "endpoint", "model", "instructions"),
           "record a run and start it; answers {run_id}, then events follow"),
    Method("resume_run", ("run_id",), (), "continue a run that was interrupted; answers {run_id}"),
    Method("cancel_run", ("run_id",), (), "ask a running run to stop; answers {run_id, cancelled}"),
    Method("rerank", ("candidate_ids",), ("split", "n_examples", "endpoint", "model"),
           "score candidates again on a split; answers one row per candidate"),
    Method("status", (), (), "what the engine has warm and which runs are active"),
    Method("shutdown", (), (), "stop the engine (and the embedded servers it started)"),
)})


def method(name: object) -> Method:
    """The declaration of ``name``; ProtocolError naming the methods there are when there is none."""
    found = METHODS.get(name) if isinstance(name, str) else None
    if found is None:
        raise ProtocolError(f"unknown method {name!r}", f"use one of {', '.join(METHODS)}")
    return found


def check(name: object, params: object) -> Method:
    """The declaration of ``name`` once ``params`` fit it; ProtocolError otherwise (both sides call this)."""
    found = method(name)
    if not isinstance(params, Mapping):
        raise ProtocolError(f"bad parameters for {found.name}: expected an object, got {type(params).__name__}",
                            f"it takes {found.usage()}")
    found.check(params)
    return found


def _check_handler(spec: Method, handler: Handler) -> None:
    """TypeError (a programming error, raised when the server is built) unless the handler takes exactly the
    declared parameters, the required ones without a default and the optional ones with one."""
    sig = inspect.signature(handler)
    required = tuple(p.name for p in sig.parameters.values() if p.default is inspect.Parameter.empty)
    optional = tuple(p.name for p in sig.parameters.values() if p.default is not inspect.Parameter.empty)
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(f"the handler of {spec.name} must be a coroutine function")
    if set(required) != set(spec.required) or set(optional) != set(spec.optional):
        raise TypeError(f"the handler of {spec.name} takes {sig}, but the protocol declares {spec.usage()}")


class Dispatcher:
    """The engine side of :data:`METHODS`: one handler per method, checked against its declaration."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        missing = [n for n in METHODS if n not in handlers]
        extra = [n for n in handlers if n not in METHODS]
        if missing or extra:
            raise TypeError(f"handlers must match the protocol's methods: missing {missing}, undeclared {extra}")
        for name, handler in handlers.items():
            _check_handler(METHODS[name], handler)
        self._handlers = dict(handlers)

    @classmethod
    def bind(cls, target: object, prefix: str = "do_") -> Dispatcher:
        """The dispatcher of an object whose method ``<prefix><name>`` handles each protocol method ``name``."""
        return cls({name: getattr(target, prefix + name) for name in METHODS if hasattr(target, prefix + name)})

    async def dispatch(self, name: object, params: object) -> Any:
        """Run the handler of ``name`` on ``params``; ProtocolError when they do not fit the declaration."""
        spec = check(name, params)
        assert isinstance(params, Mapping)
        return await self._handlers[spec.name](**params)
