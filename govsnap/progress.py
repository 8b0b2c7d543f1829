"""How far a long operation has got: the operation says what it is doing, and how much of
it is done; whoever listens shows it (the command line, on a terminal: render.py). The
library only reports here, never prints; with nobody listening (hooks, --json, a pipe, a
worker process) a report costs one lookup."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class Listener(Protocol):
    """Shows the progress of the tasks reported to it (a task inside another takes over
    until it ends)."""

    def start(self, what: str, total: int | None) -> None:
        """A task began: `total` steps, or None when it cannot say."""

    def update(self, what: str, done: int, total: int | None) -> None:
        """The innermost task is at `done` of `total`, doing `what`."""

    def stop(self) -> None:
        """The innermost task ended."""


_listener: ContextVar[Listener | None] = ContextVar("govsnap_progress", default=None)


class Task:
    """One long task as reported: advance it, or move it to its next phase."""

    def __init__(self, listener: Listener | None, what: str, total: int | None) -> None:
        self._listener = listener
        self.what = what
        self.total = total
        self.done = 0

    def advance(self, steps: int = 1) -> None:
        """Count `steps` more steps done."""
        self.done += steps
        if self._listener is not None:
            self._listener.update(self.what, self.done, self.total)

    def doing(self, what: str) -> None:
        """Say what the task is doing now (how far it is stays)."""
        self.what = what
        if self._listener is not None:
            self._listener.update(what, self.done, self.total)

    def phase(self, what: str, total: int | None = None) -> None:
        """Start the task's next phase, of `total` steps (None: cannot say)."""
        self.what, self.total, self.done = what, total, 0
        if self._listener is not None:
            self._listener.update(what, 0, total)


@contextmanager
def task(what: str, total: int | None = None) -> Iterator[Task]:
    """Report a long task while the block runs."""
    listener = _listener.get()
    if listener is not None:
        listener.start(what, total)
    try:
        yield Task(listener, what, total)
    finally:
        if listener is not None:
            listener.stop()


@contextmanager
def listening(listener: Listener | None) -> Iterator[None]:
    """Send the progress of the tasks the block runs to `listener` (None: to nobody, as
    in a worker process that must not draw on its parent's terminal)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
