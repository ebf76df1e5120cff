"""iterate_in_thread: a blocking generator seen from the event loop, on one thread throughout."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from rag_core.server.streaming import iterate_in_thread, run_in_thread, sse


def test_items_come_in_order_from_one_thread():
    threads = set()

    def numbers():
        for i in range(50):
            threads.add(threading.get_ident())
            yield i

    assert asyncio.run(run_in_thread(numbers)) == list(range(50))
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_errors_reach_the_consumer():
    def failing():
        yield 1
        raise ValueError("bad temperature")

    with pytest.raises(ValueError, match="bad temperature"):
        asyncio.run(run_in_thread(failing))


def test_a_consumer_that_stops_early_closes_the_generator_on_its_thread():
    lock = threading.Lock()
    closed = threading.Event()
    threads = []

    def tokens():
        with lock:  # as a model's lane is held while generating
            try:
                for i in range(10_000):  # 10 s, like a long answer
                    threads.append(threading.get_ident())
                    time.sleep(0.001)
                    yield i
            finally:
                threads.append(threading.get_ident())
                closed.set()

    async def first_three():
        items, got = iterate_in_thread(tokens), []
        async for item in items:
            got.append(item)
            if len(got) == 3:
                break
        await items.aclose()  # what Starlette does when the client goes away
        return got

    assert asyncio.run(first_three()) == [0, 1, 2]
    assert closed.wait(5) and len(set(threads)) == 1
    assert len(threads) < 1000  # it stopped soon after, not at the end
    assert lock.acquire(timeout=5)  # and let go of what it held


def test_sse_format():
    assert sse({"a": "é"}) == 'data: {"a": "é"}\n\n'
    assert sse("[DONE]") == "data: [DONE]\n\n"
