"""SIGTERM and SIGHUP stop a command the way Ctrl-C does.

While a command runs, both raise ``Terminated`` (a KeyboardInterrupt), so every ``finally``
that removes a temporary file and every handler that reports an interruption serves all three
signals alike; the command then exits with 128 + the signal's number (130, 143, 129), as
shells report a process killed by that signal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# SIGHUP does not exist on Windows.
HANDLED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP (``signum``)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_number(exc: BaseException) -> int:
    """The signal behind an interruption: ``Terminated``'s, else SIGINT (Ctrl-C)."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_code(exc: BaseException) -> int:
    """128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + int(signal_number(exc))


def interrupted_by(exc: BaseException) -> str:
    """"Interrupted" (Ctrl-C) or "Interrupted by SIGTERM", to start a message with."""
    signum = signal_number(exc)
    if signum == signal.SIGINT:
        return "Interrupted"
    return f"Interrupted by {signal.Signals(signum).name}"


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within this block SIGTERM and SIGHUP raise ``Terminated`` (in the main thread only,
    where Python runs signal handlers); the previous handlers come back on exit.

    The first signal raises; later ones are ignored, so cleanup is not cut short.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal the process was started with ignored (`nohup`) stays ignored.
    previous = {signum: signal.getsignal(signum) for signum in HANDLED
                if signal.getsignal(signum) is not signal.SIG_IGN}

    def handler(signum: int, frame) -> None:
        for other in previous:
            signal.signal(other, signal.SIG_IGN)
        raise Terminated(signum)

    for signum in previous:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
