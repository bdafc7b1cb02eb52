"""Errors a learner can act on.

Every expected failure in the kit (a backend that is not reachable, a malformed
manifest, a missing model file, a bad request) raises a subclass of :class:`LabError`.
Its message says what was being done, what was found and what to do next.

In Jupyter, a ``LabError`` renders as its one-paragraph message rather than a
traceback (IPython honours ``_render_traceback_``); command-line entry points catch it,
print the message to stderr and exit with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


class LabError(RuntimeError):
    """An expected, explained failure: the message names the problem and the fix."""

    def _render_traceback_(self) -> list[str]:
        """Show the message alone in IPython, without a stack trace."""
        return [f"{type(self).__name__}: {self}"]


class BackendUnavailable(LabError):
    """The requested backend (kind cluster, kwok control plane) cannot be used here."""


class ManifestError(LabError):
    """A manifest is malformed or uses something the kit does not support."""


def yaml_problem(exc: Exception) -> str:
    """A PyYAML error in one line, with where it is: ``line 3, column 7: mapping values ...``.

    PyYAML's own text spans several lines (the quoted input and a caret); its marks carry the
    0-based position, which editors show 1-based.
    """
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}" + (f" ({context})" if context else "")


class ModelStoreError(LabError):
    """A model directory is missing, empty, corrupt or ambiguous."""


class PipelineError(LabError):
    """The pipeline could not be compiled, validated or run (the message says which step)."""


#: What a command-line entry point prints when Ctrl-C stops it (see :func:`cli_errors`).
INTERRUPTED = ("interrupted: stopped before it finished. What was done stays done; run the same "
               "command again to carry on (it reuses what exists).")


def cli_errors(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate a command-line ``main`` so a :class:`LabError` exits 2 with its message.

    Ctrl-C (``KeyboardInterrupt``) exits 130, as a shell reports it, with one line instead
    of a traceback: every command decorated here is safe to run again, and says so.
    """

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except LabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print(INTERRUPTED, file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
