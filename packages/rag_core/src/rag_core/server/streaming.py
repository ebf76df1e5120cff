"""Blocking MLX work seen from the event loop: an iterator run in one thread of its own.

MLX evaluates on a per-thread stream, so a generation must stay on one thread from its first
token to its last (Starlette would resume a plain generator on any pool thread). The consumer
awaits the items; when it stops early (the client went away) the thread stops after its next
item and the iterator is closed, which releases what it holds (the model's lane).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_ITEM, _ERROR, _END = "item", "error", "end"


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Run ``make()`` and its iteration in a new thread; yield its items as they come."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(kind: str, value: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def work() -> None:
        try:
            items = make()
            for item in items:
                put(_ITEM, item)
                if stop.is_set():
                    break
            getattr(items, "close", lambda: None)()  # a generator's finally blocks run now
        except BaseException as exc:
            put(_ERROR, exc)
        else:
            put(_END)

    threading.Thread(target=work, daemon=True, name="generate").start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()


async def run_in_thread(make: Callable[[], Iterator[T]]) -> list[T]:
    """All of ``make()``'s items, computed in one thread of their own."""
    return [item async for item in iterate_in_thread(make)]


def sse(data: dict | str) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n"


SSE_DONE = sse("[DONE]")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
