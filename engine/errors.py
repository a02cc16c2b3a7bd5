"""Errors a person can act on.

Every failure that reaches a user is an :class:`IZError`: one line naming the problem and one naming the fix.
Front ends print ``str(err)`` and exit non-zero; nothing else about the error is shown, so a message must never
carry a secret (API keys are only ever named by the environment variable that holds them).

Every subclass is registered by its class name when it is defined, so an error raised inside the engine process
crosses the wire as ``{"type", "problem", "fix"}`` and :meth:`IZError.from_dict` raises the same class on the
client side (a ``ConfigError`` stays a ``ConfigError``). That is why the errors a client may receive are defined
here, in a module the client process always has, rather than beside the code that raises them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class IZError(Exception):
    """A failure with a message for people and a suggested fix."""

    exit_code = 1
    #: Every IZError class by its wire name (its class name); the first class of a name keeps it.
    registry: ClassVar[dict[str, type[IZError]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        IZError.registry.setdefault(cls.__name__, cls)

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.problem}\n  fix: {self.fix}" if self.fix else self.problem

    def to_dict(self) -> dict[str, str | None]:
        return {"type": type(self).__name__, "problem": self.problem, "fix": self.fix}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> IZError:
        """Rebuild an error sent as :meth:`to_dict`: an instance of the class of that name, or an
        :class:`EngineError` when this process knows no IZError of that name (an internal error, say)."""
        problem = str(data.get("problem") or "engine error")
        fix = data.get("fix")
        fix = None if fix is None else str(fix)
        cls = IZError.registry.get(str(data.get("type")), EngineError)
        try:
            return cls(problem, fix)
        except TypeError:  # a subclass whose constructor takes other arguments
            return EngineError(problem, fix)


IZError.registry["IZError"] = IZError


class ConfigError(IZError):
    """The configuration file or an ``IZ_*`` variable is invalid."""

    exit_code = 2


class StoreError(IZError):
    """The history database cannot be opened or written."""


class SchemaTooNewError(StoreError):
    """The history database was written by a newer release."""


class TaskError(IZError):
    """A task folder or an imported task file is invalid."""

    exit_code = 2


class EndpointError(IZError):
    """The black-box endpoint refused or failed a request for good (not worth retrying)."""


class ModelError(IZError):
    """A catalog model is unknown, not pulled, damaged, or cannot be pulled."""

    exit_code = 2


class GeneratorError(IZError):
    """The generator model cannot be found or loaded (the generators raise it)."""

    exit_code = 2


class ProtocolError(IZError):
    """A request the engine cannot route: an unknown method, or parameters that do not fit the method."""


class EngineError(IZError):
    """The engine process died or answered with an error this process has no class for."""


class MetricError(TaskError):
    """A task's own metric (its metric.py function) failed or returned something that is not a score.

    A TaskError, so the run stops with status ``failed`` and this message, and can be resumed once the metric is
    fixed (the black-box answers are cached, so nothing is paid twice).
    """
