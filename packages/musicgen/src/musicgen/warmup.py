"""Loading the GPU's kernels on helper threads while the weights are still being read.

On CUDA a fresh process pays, on the first use of each kind of operation, for loading MLX's
kernel module (0.07-0.15 s on an H200 for, say, the first reflect pad or product of a strided
view: ``benchmarks/probe_first_use.py``) and for cuBLAS's set-up: most of what made its first
generation slower than its second. So ``load`` runs the codec and the text encoder once on a
tiny input, each on a thread of its own as soon as its weights are in, while it reads the
decoder's weights, and waits for them before it returns. Only the kernels they load into the
process carry over (MLX keeps compiled traces per thread), and the outputs are dropped. The
warm-ups run MLX's own operations only (``musicgen.kernels.plain_operations``): loading their
modules is what they are for, and the project's kernels come from the kernel cache in
milliseconds when first used. An earlier warm-up of cuDNN's convolutions on such a thread broke
the CUDA graph the main thread was capturing (H200, 2026-12-01); EnCodec has no cuDNN
convolution since.

``MUSICGEN_WARM_UP=0`` turns it off, ``=1`` on (the default: on with MLX's CUDA backend only;
on the CPU nothing is loaded at first use, and Metal is not measured yet).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import mlx.core as mx

from musicgen import kernels

ENV = "MUSICGEN_WARM_UP"


def warm_up_enabled() -> bool:
    """Whether ``load`` warms up: ``MUSICGEN_WARM_UP``, else on with a CUDA default device."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("0", "off", "false", "no"):
        return False
    if value in ("1", "on", "true", "yes"):
        return True
    return mx.default_device() == mx.gpu and mx.cuda.is_available()


class WarmUp:
    """Calls run once each on daemon threads, each on a stream of its own; ``wait`` joins
    them. A call that fails is recorded in ``errors`` and otherwise ignored: the real call
    will meet the same problem and report it."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = warm_up_enabled() if enabled is None else enabled
        self.done: list[str] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []

    def run(self, name: str, call: Callable[[], object]) -> None:
        """Start ``call()`` (its outputs are evaluated, then dropped) on a new thread."""
        if not self.enabled:
            return
        device = mx.default_device()
        thread = threading.Thread(
            target=self._body, args=(name, call, device), name=f"warm-up {name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _body(self, name: str, call: Callable[[], object], device: mx.Device) -> None:
        try:
            stream = mx.new_stream(device)
            with mx.stream(stream), kernels.plain_operations():
                mx.eval(call())
            mx.synchronize(stream)
            self.done.append(name)
        except Exception as error:  # see the class docstring
            self.errors.append(error)

    def wait(self) -> None:
        """Wait for every call started."""
        for thread in self._threads:
            thread.join()
        self._threads.clear()
