"""Where a command's time goes: the phases of one thread's work, printed when asked for.

``mark_phase("load")`` ends the phase called "load" now: it lasted since the previous mark of
the same thread (the first one since the process started). With ``MLX_RAG_TIMINGS=1`` every
`mlx-rag` command prints its phases on stderr when it ends, one line:

    Timings: start-up 0.41 s, plugins 0.04 s, ..., write 0.01 s; 3.12 s since the process started

Marks cost a clock read and a list append, so library code marks its phases unconditionally;
``timeline()`` gives them to benchmarks. The start of the process is read from the kernel on
Linux (10 ms resolution); elsewhere the first phase starts when this module was imported.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

TIMINGS_ENV = "MLX_RAG_TIMINGS"
MAX_PHASES = 256  # a long-lived process (the server) keeps only its threads' latest phases

_IMPORTED = time.perf_counter()
_local = threading.local()


def process_age() -> float | None:
    """Seconds since this process started, from /proc (Linux); None where that is unknown."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _started() -> float:
    """The process's start on the perf_counter clock (the import of this module if unknown)."""
    start = getattr(_started, "value", None)
    if start is None:
        age = process_age()
        start = _IMPORTED if age is None else min(_IMPORTED, time.perf_counter() - age)
        _started.value = start
    return start


def _phases() -> deque[tuple[str, float]]:
    phases = getattr(_local, "phases", None)
    if phases is None:
        phases = _local.phases = deque(maxlen=MAX_PHASES)
        _local.last = _started()
    return phases


def mark_phase(name: str) -> float:
    """End the phase ``name`` of this thread now; return how long it took (seconds)."""
    now = time.perf_counter()
    phases = _phases()
    seconds = now - _local.last
    phases.append((name, seconds))
    _local.last = now
    return seconds


def timeline() -> list[tuple[str, float]]:
    """This thread's phases so far (the last MAX_PHASES), in order: (name, seconds)."""
    return list(_phases())


def reset_timeline() -> None:
    """Forget this thread's phases; the next one starts now."""
    _phases().clear()
    _local.last = time.perf_counter()


def summary() -> str:
    """One line: each phase of this thread (same names summed, in order of first use), then
    the seconds since the process started."""
    totals: dict[str, float] = {}
    for name, seconds in timeline():
        totals[name] = totals.get(name, 0.0) + seconds
    parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in totals.items())
    total = time.perf_counter() - _started()
    return f"Timings: {parts or 'nothing marked'}; {total:.2f} s since the process started"
