"""Errors a person can act on.

Every failure that reaches a user is an :class:`IZError`: one line naming the problem and one naming the fix.
Front ends print ``str(err)`` and exit non-zero; nothing else about the error is shown, so a message must never
carry a secret (API keys are only ever named by the environment variable that holds them).
"""

from __future__ import annotations


class IZError(Exception):
    """A failure with a message for people and a suggested fix."""

    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.problem}\n  fix: {self.fix}" if self.fix else self.problem

    def to_dict(self) -> dict[str, str | None]:
        return {"type": type(self).__name__, "problem": self.problem, "fix": self.fix}


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


class BudgetExhausted(IZError):
    """A run reached one of its budgets; the run stops cleanly."""


class EngineError(IZError):
    """The engine process died or answered with an error."""
