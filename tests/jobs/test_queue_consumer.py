"""``QueueConsumer``: pgqueuer's queue manager with fewer statements per wake-up, and the
same behaviour: every entry runs once, a burst larger than a batch is drained, a deferred
entry (a retry's backoff, a parked job) runs when it is due, not at the next poll."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import asyncpg
from pgqueuer import Queries
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.errors import RetryRequested
from pgqueuer.models import Job

from ragserve.db.pool import Database
from ragserve.jobs.queue import ConsumerDriver, QueueConsumer, wait_probe_statement

ENTRYPOINT = "consumer_test"
POLL = timedelta(seconds=30)  # longer than the test: whatever runs was woken, not polled


class CountingDriver(ConsumerDriver):
    """The consumer's driver, counting the statements read through it by kind."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        super().__init__(connection)
        self.kinds: Counter[str] = Counter()

    async def fetch(self, query: str, *args: object) -> list[dict[str, object]]:
        if query == wait_probe_statement():
            self.kinds["probe"] += 1
        elif "queued_work" in query or "execute_after - NOW()" in query:
            self.kinds["pgqueuer probe"] += 1
        elif "FOR UPDATE SKIP LOCKED" in query:
            self.kinds["dequeue"] += 1
        return await super().fetch(query, *args)


async def test_the_probe_answers_as_pgqueuers_probes(db: Database) -> None:
    conn = await asyncpg.connect(db.url)
    try:
        queries = Queries(AsyncpgDriver(conn))

        async def both() -> tuple[tuple[bool, object], tuple[bool, timedelta | None]]:
            [row] = await conn.fetch(wait_probe_statement(), [ENTRYPOINT])
            eligible = await queries.eligible_queued_work([ENTRYPOINT]) > 0
            return (row["eligible"], row["eta"]), (
                eligible,
                await queries.next_deferred_eta([ENTRYPOINT]),
            )

        assert await both() == ((False, None), (False, None))
        await queries.enqueue(ENTRYPOINT, b"later", execute_after=timedelta(minutes=5))
        (ours, eta), (theirs, their_eta) = await both()
        assert ours is theirs is False
        assert isinstance(eta, timedelta) and their_eta is not None
        assert timedelta(minutes=4) < eta <= timedelta(minutes=5)
        assert abs(eta - their_eta) < timedelta(seconds=1)
        await queries.enqueue(ENTRYPOINT, b"now")
        assert (await both())[0][0] is True and (await both())[1][0] is True
        [other] = await conn.fetch(wait_probe_statement(), ["another_entrypoint"])
        assert (other["eligible"], other["eta"]) == (False, None)
    finally:
        await conn.close()


async def test_bursts_and_deferred_entries_run_once_and_on_time(db: Database) -> None:
    conn = await asyncpg.connect(db.url)
    driver = CountingDriver(conn)
    consumer = QueueConsumer(Queries(driver))
    ran: Counter[bytes] = Counter()
    ran_at: dict[bytes, float] = {}
    seen = asyncio.Event()

    @consumer.entrypoint(ENTRYPOINT)
    async def handle(job: Job) -> None:
        payload = job.payload or b""
        ran[payload] += 1
        ran_at[payload] = time.monotonic()
        seen.set()
        if payload == b"retry" and ran[payload] == 1:
            raise RetryRequested(timedelta(seconds=0.4), reason="as the worker's backoff does")

    async def until(done: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                seen.clear()
                await seen.wait()

    producer_conn = await asyncpg.connect(db.url)
    producer = Queries(AsyncpgDriver(producer_conn))
    running = asyncio.create_task(
        consumer.run(dequeue_timeout=POLL, batch_size=2, max_concurrent_tasks=4)
    )
    try:
        await asyncio.sleep(0.5)  # the consumer listens
        # One entry while idle: one dequeue and one probe (pgqueuer's own: a second, empty
        # dequeue and up to three probes).
        driver.kinds.clear()
        await producer.enqueue(ENTRYPOINT, b"single")
        await until(lambda: ran[b"single"] == 1)
        await asyncio.sleep(0.3)
        assert driver.kinds == Counter({"dequeue": 1, "probe": 1})

        # More entries than a batch and than the consumer's budget, in one statement.
        burst = [f"burst-{i}".encode() for i in range(9)]
        await producer.enqueue([ENTRYPOINT] * len(burst), list(burst), [0] * len(burst))
        await until(lambda: all(ran[p] == 1 for p in burst))

        # A retry with a backoff (an entry deferred by RetryRequested) and an entry deferred
        # at enqueue: both run when due, well before the 30 s poll.
        enqueued = time.monotonic()
        await producer.enqueue(ENTRYPOINT, b"retry")
        await producer.enqueue(ENTRYPOINT, b"deferred", execute_after=timedelta(seconds=0.6))
        await until(lambda: ran[b"retry"] == 2 and ran[b"deferred"] == 1)
        assert 0.4 <= ran_at[b"retry"] - enqueued < 3.0
        assert 0.6 <= ran_at[b"deferred"] - enqueued < 3.0
        await asyncio.sleep(0.3)
        assert set(ran.values()) == {1, 2} and ran[b"retry"] == 2 and len(ran) == 12
        assert driver.kinds["pgqueuer probe"] == 0
    finally:
        consumer.shutdown.set()
        await asyncio.wait_for(running, 10)
        await conn.close()
        await producer_conn.close()


async def test_a_saturated_consumer_listens_for_removals(db: Database) -> None:
    """At its budget, the consumer wants removals again (its own acknowledgements free the
    slots an entry waits for); with a batch's worth of free slots it ignores them."""
    conn = await asyncpg.connect(db.url)
    driver = CountingDriver(conn)
    consumer = QueueConsumer(Queries(driver))
    gate = asyncio.Event()
    started: list[bytes] = []
    finished: list[bytes] = []

    @consumer.entrypoint(ENTRYPOINT)
    async def handle(job: Job) -> None:
        started.append(job.payload or b"")
        if job.payload != b"alone":
            await gate.wait()
        finished.append(job.payload or b"")

    async def until(done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not done():
                await asyncio.sleep(0.02)

    producer_conn = await asyncpg.connect(db.url)
    producer = Queries(AsyncpgDriver(producer_conn))
    running = asyncio.create_task(
        consumer.run(dequeue_timeout=POLL, batch_size=2, max_concurrent_tasks=4)
    )
    try:
        await asyncio.sleep(0.5)
        held = [f"held-{i}".encode() for i in range(6)]
        await producer.enqueue([ENTRYPOINT] * len(held), list(held), [0] * len(held))
        await until(lambda: len(started) == 4)  # the budget: 2 entries wait in the queue
        await asyncio.sleep(0.2)
        assert driver.removals_wake is True and len(started) == 4
        gate.set()
        await until(lambda: len(finished) == 6)
        await producer.enqueue(ENTRYPOINT, b"alone")
        await until(lambda: b"alone" in finished)
        assert driver.removals_wake is False
    finally:
        consumer.shutdown.set()
        await asyncio.wait_for(running, 10)
        await conn.close()
        await producer_conn.close()
