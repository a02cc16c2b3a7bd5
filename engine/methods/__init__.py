"""The methods a run can use, by name: the built-in ones, then any installed plug-in.

A plug-in is a package that declares an entry point in the group ``instructzero.methods`` pointing at a
:class:`~engine.methods.base.Method` subclass; it then appears in ``iz run --method``, the TUI's picker, sweeps and
cost estimates like a built-in one (the order is the built-ins', then the plug-ins' by name). Importing this package
is cheap: the methods import torch, the generator or the black box only inside ``propose``.
"""

from __future__ import annotations

import importlib.metadata
import logging
from types import MappingProxyType

from engine.errors import IZError
from engine.methods.ape import Ape
from engine.methods.ape_local import ApeLocal
from engine.methods.base import Context, Method, Proposal
from engine.methods.instinct import Instinct
from engine.methods.instructzero import InstructZero
from engine.methods.manual import Manual
from engine.methods.opro import Opro
from engine.methods.uniform import RandomSoftPrompts

__all__ = ["METHODS", "METHOD_HELP", "Context", "Method", "Proposal", "get", "names"]

ENTRY_POINTS = "instructzero.methods"
_BUILTIN: tuple[type[Method], ...] = (InstructZero, RandomSoftPrompts, Ape, ApeLocal, Opro, Instinct, Manual)


def _discover() -> dict[str, Method]:
    found = {cls.name: cls() for cls in _BUILTIN}
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Method)) or cls.name in found:
                raise TypeError(f"not a Method subclass with a new name: {cls!r}")
            found[cls.name] = cls()
        except Exception:  # a broken plug-in must not take the built-in methods down with it
            logging.getLogger(__name__).exception("method plug-in %s could not be loaded", ep.value)
    return found


#: Every method, in the order front ends list them.
METHODS = MappingProxyType(_discover())
#: One line per method, for pickers and ``--help``.
METHOD_HELP = MappingProxyType({name: m.help for name, m in METHODS.items()})


def names() -> tuple[str, ...]:
    return tuple(METHODS)


def get(name: str) -> Method:
    """The method called ``name``, or an error that lists the ones there are."""
    try:
        return METHODS[name]
    except KeyError:
        raise IZError(f"unknown method {name!r}", f"use one of {', '.join(METHODS)}") from None
