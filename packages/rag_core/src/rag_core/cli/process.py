"""How a finished ``mlx-rag`` command ends its process."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import Any, NoReturn


def end_process(code: Any = 0, *, wait_for_threads: bool = True) -> NoReturn:
    """Exit with ``code`` (as ``sys.exit`` takes it) once a command is done, skipping the
    interpreter's finalization when no other thread is still working.

    Finalization tears down every imported module and every object one by one: after a track
    that is 0.15-0.2 s of a 1 s command on a 2-core CPU (SciPy's modules alone), and on a GPU
    also the model's buffers. The exit handlers (``atexit``: logging, open files) still run and
    the standard streams are flushed, so output and exit codes are those of a normal exit.

    ``wait_for_threads=False`` never finalizes, even while other threads still run: for the
    stopped server, whose jobs are cancelled and their files removed by now, but whose worker
    threads that ran MLX may still be running their thread-local destructors, which take the
    GIL. Were the interpreter finalizing meanwhile, such a thread would be torn down inside a
    C++ destructor and the process abort (std::terminate, exit status -6) after a clean
    shutdown."""
    if code is None:
        code = 0
    elif not isinstance(code, int):  # a message, as sys.exit prints it
        print(code, file=sys.stderr)
        code = 1
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if wait_for_threads and (run_exit_handlers is None or _other_threads_working()):
        sys.exit(code)  # a worker still runs (or not CPython): let the interpreter wait as usual
    if run_exit_handlers is None:
        logging.shutdown()
    else:
        run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): as Python reports it
            code = code or 120
    os._exit(code)


def _other_threads_working() -> bool:
    return any(t.is_alive() and not t.daemon for t in threading.enumerate()
               if t is not threading.main_thread())
