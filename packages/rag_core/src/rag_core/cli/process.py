"""How an ``mlx-rag`` process starts under a launcher (``pin_rank_gpu``) and how a finished
command ends it (``end_process``)."""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, NoReturn

RANK_ENV = "MLX_RANK"  # set by mlx.launch for every rank it starts
HOSTFILE_ENV = "MLX_HOSTFILE"  # the ring backend's hosts: a JSON list, one ["ip:port", ...] a rank
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the driver runs


def pin_rank_gpu(environ: MutableMapping[str, str] = os.environ,
                 gpus: int | None = None) -> str | None:
    """Give this rank of an ``mlx.launch`` run the GPU of its local rank; return it (or None).

    The ring backend starts every rank with the same environment, so on a host with several GPUs
    each rank would run on the first: two ranks on one GPU, the other idle. Before MLX starts
    CUDA this sets ``CUDA_VISIBLE_DEVICES`` to the GPU of the rank's index among the ranks of
    its host (round robin over ``gpus``, by default the driver's count), as mlx.launch's nccl
    backend does itself. Nothing is changed where the process was not launched, a launcher or
    the user already chose (``CUDA_VISIBLE_DEVICES`` set), MLX is already imported, the host has
    fewer than two GPUs, or the hostfile cannot be read."""
    if VISIBLE_ENV in environ or RANK_ENV not in environ or "mlx.core" in sys.modules:
        return None
    try:
        rank = int(environ[RANK_ENV])
    except ValueError:
        return None
    local = local_rank(environ.get(HOSTFILE_ENV), rank)
    gpus = nvidia_gpu_count() if gpus is None else gpus
    if local is None or gpus < 2:
        return None
    environ[VISIBLE_ENV] = str(local % gpus)
    return environ[VISIBLE_ENV]


def local_rank(hostfile: str | None, rank: int) -> int | None:
    """``rank``'s index among the ranks on its host, from the ring backend's hostfile (None where
    it is missing or unreadable)."""
    try:
        ranks = json.loads(Path(hostfile).read_text()) if hostfile else None
        hosts = [entry[0].rsplit(":", 1)[0] for entry in ranks]
    except (OSError, ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None
    if not 0 <= rank < len(hosts):
        return None
    return hosts[:rank].count(hosts[rank])


def nvidia_gpu_count() -> int:
    """The GPUs the NVIDIA driver runs on this host (0 elsewhere), read without starting CUDA."""
    try:
        return sum(1 for _ in NVIDIA_GPUS.iterdir())
    except OSError:
        return 0


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
