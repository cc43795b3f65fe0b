"""``EventsUntil``: a stream's events one at a time until they end or the process closes its
streams, with one reader task per stream (not two tasks per event)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ragserve.api.sse import EventsUntil, StreamEnd
from ragserve.errors import DatabaseError
from ragserve.jobs.models import JobEvent

STEP_S = 5.0  # a hang fails instead of blocking the run


class Source:
    """Events handed in by the test, and whether the generator reading them was closed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[JobEvent | Exception | None] = asyncio.Queue()
        self.closed = False

    async def events(self) -> AsyncIterator[JobEvent | None]:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
                if item is not None and item.terminal:
                    return
        finally:
            self.closed = True


def event(seq: int, type_: str = "token") -> JobEvent:
    return JobEvent(seq=seq, type=type_, data={"text": f"t{seq}"})


async def test_events_and_keepalives_in_order_then_the_end() -> None:
    source, closing = Source(), asyncio.Event()
    async with asyncio.timeout(STEP_S), EventsUntil(source.events(), closing) as items:
        for item in (event(1), None, event(2), event(3, "done")):
            source.queue.put_nowait(item)
        assert [await items.next() for _ in range(4)] == [
            event(1),
            None,
            event(2),
            event(3, "done"),
        ]
        assert isinstance(await items.next(), StreamEnd)
    assert source.closed


async def test_closing_ends_a_waiting_stream_and_closes_its_events() -> None:
    source, closing = Source(), asyncio.Event()
    async with asyncio.timeout(STEP_S), EventsUntil(source.events(), closing) as items:
        source.queue.put_nowait(event(1))
        assert await items.next() == event(1)
        waiting = asyncio.create_task(items.next())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # nothing to send: it waits
        closing.set()
        assert isinstance(await waiting, StreamEnd)
    assert source.closed  # the generator (and its feed) let go at once


async def test_a_stream_opened_while_closing_ends_at_once() -> None:
    source, closing = Source(), asyncio.Event()
    closing.set()
    async with asyncio.timeout(STEP_S), EventsUntil(source.events(), closing) as items:
        assert isinstance(await items.next(), StreamEnd)


async def test_what_reading_raises_reaches_the_stream() -> None:
    source, closing = Source(), asyncio.Event()
    with pytest.raises(DatabaseError, match="gone"):
        async with asyncio.timeout(STEP_S), EventsUntil(source.events(), closing) as items:
            source.queue.put_nowait(DatabaseError("gone"))
            await items.next()
    assert source.closed


async def test_a_client_that_leaves_mid_wait_leaves_no_task_behind() -> None:
    source, closing = Source(), asyncio.Event()
    before = asyncio.all_tasks()

    async def stream() -> None:
        async with EventsUntil(source.events(), closing) as items:
            await items.next()

    task = asyncio.create_task(stream())
    await asyncio.sleep(0.01)
    task.cancel()  # what Starlette does when the client disconnects
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.closed
    assert asyncio.all_tasks() == before
