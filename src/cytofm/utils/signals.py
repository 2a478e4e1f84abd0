"""Stop requests from a scheduler or a user, kept as finished work rather than a silent death.

SLURM and other schedulers send SIGTERM at a time limit (some SIGUSR1 a while before it), and Python's
default for SIGTERM is to die on the spot without running any clean-up. ``terminate_as_interrupt`` makes
SIGTERM and SIGUSR1 behave as Ctrl-C, so every command that keeps its finished work on Ctrl-C keeps it on
a scheduler's stop too. ``deferred_stop`` goes further for a loop that can save its state between two
steps (pretraining): the signal only raises a flag, the step in flight finishes, and the loop saves and
stops at the next boundary; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")


class Terminated(KeyboardInterrupt):
    """A stop signal other than Ctrl-C, raised where Ctrl-C's KeyboardInterrupt would be."""

    def __init__(self, name: str):
        super().__init__(name)
        self.signal_name = name


def exit_code(name: str) -> int:
    """The shell's convention for a process stopped by a signal: 128 + its number."""
    return 128 + int(getattr(signal, name, signal.SIGINT))


def _available(names) -> list[signal.Signals]:
    return [getattr(signal, n) for n in names if hasattr(signal, n)]


def terminate_as_interrupt() -> None:
    """SIGTERM and SIGUSR1 raise :class:`Terminated` in the main thread (Ctrl-C keeps Python's own)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def raise_terminated(signum, frame):
        raise Terminated(signal.Signals(signum).name)

    for s in _available(("SIGTERM", "SIGUSR1")):
        signal.signal(s, raise_terminated)


def default_stop_signals() -> None:
    """SIGTERM and SIGUSR1 back to the system's default (end the process), once a command's work is done: a
    signal during interpreter shutdown must not raise into atexit handlers and destructors."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in _available(("SIGTERM", "SIGUSR1")):
        signal.signal(s, signal.SIG_DFL)


class StopFlag:
    """Which stop signal arrived first (None: none yet)."""

    def __init__(self):
        self.name: str | None = None

    def __bool__(self) -> bool:
        return self.name is not None


@contextmanager
def deferred_stop(names=STOP_SIGNALS):
    """Inside the block the stop signals set the yielded :class:`StopFlag` instead of stopping the process;
    the previous handlers come back on exit. A second SIGINT raises KeyboardInterrupt at once. Outside the
    main thread (where Python cannot install handlers) the flag simply never rises."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def note(signum, frame):
        name = signal.Signals(signum).name
        if flag and name == "SIGINT":
            raise KeyboardInterrupt
        flag.name = flag.name or name

    old = {s: signal.signal(s, note) for s in _available(names)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Stopped(RuntimeError):
    """A loop stopped by a stop signal after saving its state; the message says where."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.signal_name = name
        self.progress_reason = name
