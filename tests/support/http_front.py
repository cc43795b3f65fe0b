"""A tiny HTTP/1.1 front (a load balancer with faults on order) for the client's retry tests.

It listens on a real TCP port, records every request it receives (method, path, headers, body,
time), and answers each one by the next action planned for its method and path: a canned
answer (``503`` with ``Retry-After``, ``409``, ...), a connection reset (RST) or hang-up after
reading the request, or forwarding to an upstream service, optionally throwing the upstream's
answer away and resetting or answering ``504`` instead: the request went through, its answer
was lost, as when a replica is killed or a proxy times out. Streamed answers (SSE) are relayed
as they come. One request per connection (``Connection: close``), which keeps it small.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        body = json.dumps(self.body).encode() if self.body is not None else b""
        head = [f"HTTP/1.1 {self.status} X", "Connection: close", f"Content-Length: {len(body)}"]
        if self.body is not None:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class Reset:
    """Read the request, then reset the connection (RST) without a byte of answer."""


@dataclass(frozen=True)
class HangUp:
    """Read the request, then close the connection cleanly without an answer."""


@dataclass(frozen=True)
class Forward:
    """Send the request upstream; relay its answer, or discard it and do ``then`` instead."""

    then: Answer | Reset | HangUp | None = None


Action = Answer | Reset | HangUp | Forward


@dataclass(frozen=True)
class UpstreamAnswer:
    """What the upstream answered; ``body`` only for an answer thrown away (else relayed)."""

    method: str
    path: str
    status: int
    body: bytes | None


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic()


class HttpFront:
    """See the module docstring. ``plan`` actions per ``(method, path)``; when none is left, a
    request is forwarded (or answered ``404`` without an upstream)."""

    def __init__(self, upstream: str | None = None, port: int = 0) -> None:
        self.upstream = upstream
        self.port = port
        self.seen: list[Seen] = []
        self.upstream_answers: list[UpstreamAnswer] = []
        self._plans: dict[tuple[str, str], deque[Action]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.url = ""

    def plan(self, method: str, path: str, *actions: Action) -> None:
        with self._lock:
            self._plans[(method, path)].extend(actions)

    def requests(self, method: str, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if (s.method, s.path) == (method, path)]

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        # The server belongs to the loop's thread: close it there (closing it from the test's
        # thread raced with the loop and failed now and then in asyncio's own bookkeeping).
        if self._server is not None:
            server = self._server
            asyncio.run_coroutine_threadsafe(self._close(server), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @staticmethod
    async def _close(server: asyncio.Server) -> None:
        server.close()

    @contextmanager
    def running(self) -> Iterator[HttpFront]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # ------------------------------------------------------------------ one connection

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen = await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        with self._lock:
            self.seen.append(seen)
            queue = self._plans[(seen.method, seen.path)]
            action: Action = queue.popleft() if queue else Forward()
        if isinstance(action, Forward) and self.upstream is None:
            action = Answer(404, {"error": {"type": "NotFound", "message": "no upstream"}})
        try:
            if isinstance(action, Forward):
                await self._forward(seen, action, writer)
            else:
                await _act(action, writer)
        except (ConnectionError, asyncio.CancelledError):
            writer.transport.abort()

    async def _forward(self, seen: Seen, action: Forward, writer: asyncio.StreamWriter) -> None:
        skip = {"host", "content-length", "connection", "transfer-encoding"}
        headers = {k: v for k, v in seen.headers.items() if k not in skip}
        async with (
            httpx.AsyncClient(base_url=str(self.upstream), timeout=60) as client,
            client.stream(seen.method, seen.path, headers=headers, content=seen.body) as answer,
        ):
            body = await answer.aread() if action.then is not None else None
            with self._lock:
                self.upstream_answers.append(
                    UpstreamAnswer(seen.method, seen.path, answer.status_code, body)
                )
            if action.then is not None:
                await _act(action.then, writer)
                return
            keep = [
                (k, v)
                for k, v in answer.headers.items()
                if k.lower() not in {"content-length", "connection", "transfer-encoding"}
            ]
            head = [f"HTTP/1.1 {answer.status_code} X", "Connection: close"]
            head += [f"{k}: {v}" for k, v in keep]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
            try:
                async for chunk in answer.aiter_raw():  # the body ends with the connection
                    writer.write(chunk)
                    await writer.drain()
            except httpx.TransportError:  # the upstream dropped: drop too, not a clean end
                await _act(Reset(), writer)
                return
        await writer.drain()
        writer.close()


async def _act(action: Answer | Reset | HangUp, writer: asyncio.StreamWriter) -> None:
    if isinstance(action, Reset):
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return
    if isinstance(action, Answer):
        writer.write(action.encode())
        await writer.drain()
    writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Seen:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", ""):
        raise AssertionError("chunked request bodies are not supported by this test front")
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Seen(method, target, headers, body, time.monotonic())
