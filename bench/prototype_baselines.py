"""The two shapes of RAG prototype that ragserve's users start from, as runnable baselines.

Benchmarks compare ragserve with what a team has before it: a FastAPI app whose ``/ask``
endpoint calls the LLM synchronously and answers when the LLM is done. Two variants:

``serial``
    The blocking LLM call (a synchronous ``httpx.Client``, as in a prototype's chain) under a
    global ``threading.Lock``: the prototype that wraps a non-thread-safe chain (or a single
    local model) in a lock, so it answers one question at a time however many arrive.
``pool4``
    The same blocking call without the lock, on a pool of 4 threads (an anyio
    ``CapacityLimiter(4)``, the equivalent of ``ThreadPoolExecutor(4)``): the "we added a
    thread pool" prototype. At most 4 LLM calls are in flight; the rest wait for a thread.

The endpoint itself is ``async def`` and hands the blocking call to a thread. A plain ``def``
endpoint would behave the same for the LLM, but FastAPI then also validates each response on
the shared worker-thread pool, queued behind the requests still waiting for the lock or a
thread: finished answers would be held back and the baselines would look worse than their
design is. The comparison should be with the design, not with that artefact.

Both send the LLM one fixed context passage in the ``[1] (source: ...)`` format that
``bench/mock_llm.py`` answers from, so an answer costs the same number of tokens as
ragserve's answer to a question about that passage. There is no retrieval: the LLM call is
what dominates a prototype's latency, and leaving retrieval out only flatters the baselines.

Run::

    python bench/mock_llm.py --port 9000 --ttft 0.5 --tps 50 --max-concurrency 64 &
    python bench/prototype_baselines.py --mode serial --port 8101 \\
        --llm-url http://127.0.0.1:9000/v1 &
    python bench/load_baselines.py --url http://127.0.0.1:8101 --n 32

``--port 0`` picks a free port; the first line on stdout is always
``baseline MODE listening on http://HOST:PORT``.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Literal

import anyio
import anyio.to_thread
import httpx
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.datastructures import State

Mode = Literal["serial", "pool4"]
MODES: tuple[Mode, ...] = ("serial", "pool4")
POOL_THREADS = 4

SYSTEM = "Answer the question using only the numbered context passages. Cite them as [n]."
PASSAGE = (
    "[1] (source: handbook.md)\n"
    "Employees may work remotely up to three days a week with their manager's agreement, "
    "and the office is open from eight to eight on working days. "
    "Requests for longer remote periods go to the people team."
)


class Question(BaseModel):
    question: str = Field(min_length=1)


class Answer(BaseModel):
    answer: str
    latency_s: float


def build_messages(question: str) -> list[dict[str, str]]:
    """System prompt plus one passage and the question, as a prototype's prompt template."""
    user = f"Context passages:\n\n{PASSAGE}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def ask_llm(http: httpx.Client, llm_url: str, model: str, question: str) -> str:
    """One blocking, non-streamed chat completion: what the prototype's chain does."""
    response = http.post(
        f"{llm_url.rstrip('/')}/chat/completions",
        json={"model": model, "messages": build_messages(question), "temperature": 0},
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def create_app(mode: Mode, llm_url: str, model: str = "mock-llm") -> FastAPI:
    """The baseline app. Its HTTP client, lock and thread limit are made per app, at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        with httpx.Client(timeout=httpx.Timeout(600, connect=5), limits=limits) as http:
            app.state.http = http
            app.state.lock = threading.Lock() if mode == "serial" else contextlib.nullcontext()
            # serial: anyio's default pool (40 threads), all but one waiting on the lock
            app.state.limiter = (
                anyio.CapacityLimiter(POOL_THREADS)
                if mode == "pool4"
                else anyio.to_thread.current_default_thread_limiter()
            )
            yield

    app = FastAPI(title=f"prototype baseline ({mode})", lifespan=lifespan)

    def blocking_answer(state: State, question: str) -> str:
        lock: AbstractContextManager[object] = state.lock
        with lock:
            return ask_llm(state.http, llm_url, model, question)

    @app.post("/ask")
    async def ask(body: Question, request: Request) -> Answer:
        started = time.perf_counter()
        state = request.app.state
        try:
            answer = await anyio.to_thread.run_sync(
                blocking_answer, state, body.question, limiter=state.limiter
            )
        except httpx.HTTPError as exc:
            raise HTTPException(status_code=502, detail=f"LLM call failed: {exc}") from exc
        return Answer(answer=answer, latency_s=round(time.perf_counter() - started, 4))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "mode": mode}

    return app


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100, help="0 picks a free port")
    parser.add_argument("--llm-url", default="http://127.0.0.1:9000/v1", help="includes /v1")
    parser.add_argument("--model", default="mock-llm")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    app = create_app(args.mode, args.llm_url, args.model)
    # Bind here so that --port 0 works and the real port can be announced.
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    print(f"baseline {args.mode} listening on http://{netloc}", flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
