"""A mock reranker speaking the common ``/rerank`` API, for benchmarks and tests.

Run it::

    python bench/mock_rerank.py --host 127.0.0.1 --port 9100 [--shape cohere|tei]
        [--delay 0.0] [--error-rate 0.0] [--error-status 500] [--seed N]

and point ragserve at it with ``RAGSERVE_RERANK_BASE_URL=http://127.0.0.1:9100/v1``. ``--port
0`` picks a free port; the first line printed on stdout is ``mock reranker listening on
http://HOST:PORT/v1``. Or import it: ``create_app(RerankConfig(...))`` returns the ASGI app.

Endpoints
---------
``POST /v1/rerank`` (also ``/rerank``)
    Reads ``query`` and ``documents`` (Cohere, Jina, vLLM) or ``texts`` (TEI), and ``top_n``.
    ``shape: cohere`` answers ``{"model", "results": [{"index", "relevance_score"}]}``;
    ``shape: tei`` answers ``[{"index", "score"}]``; best first either way.
``POST /admin/config``
    Changes ``delay`` (seconds before answering), ``error_rate``, ``error_status``, ``shape``.
``GET /admin/stats``
    ``requests_total``, ``requests_failed``.

Scores are a lexical overlap, not a model: the share of the query's words found in the
document, weighted by word length (identifiers and long words count more); Chinese counts by
character bigrams. Deterministic, so tests can predict the order.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import re
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_WORD = re.compile(r"[^\W\u3400-\u9fff]+|[\u3400-\u9fff]+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u9fff]+")


@dataclass
class RerankConfig:
    shape: str = "cohere"
    delay: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    seed: int | None = None
    model: str = "mock-rerank"


def terms(text: str) -> set[str]:
    out: set[str] = set()
    for word in _WORD.findall(text.lower()):
        if _CJK.fullmatch(word):
            out.update(word[i : i + 2] for i in range(max(1, len(word) - 1)))
        else:
            out.add(word)
    return out


def overlap_score(query: str, document: str) -> float:
    wanted = terms(query)
    if not wanted:
        return 0.0
    found = terms(document)
    return sum(len(t) for t in wanted if t in found) / sum(len(t) for t in wanted)


class _State:
    def __init__(self, config: RerankConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.requests_total = 0
        self.requests_failed = 0


async def _rerank(request: Request) -> Response:
    state: _State = request.app.state.mock
    state.requests_total += 1
    config = state.config
    if config.delay:
        await asyncio.sleep(config.delay)
    if config.error_rate and state.rng.random() < config.error_rate:
        state.requests_failed += 1
        return JSONResponse({"error": "injected failure"}, status_code=config.error_status)
    try:
        body = await request.json()
        query = str(body["query"])
        documents = [str(d) for d in (body.get("documents") or body["texts"])]
    except (ValueError, KeyError, TypeError):
        state.requests_failed += 1
        return JSONResponse({"error": "need query and documents (or texts)"}, status_code=422)
    scored = sorted(
        ((overlap_score(query, doc), i) for i, doc in enumerate(documents)),
        key=lambda pair: (-pair[0], pair[1]),
    )[: int(body.get("top_n") or len(documents))]
    if config.shape == "tei":
        return JSONResponse([{"index": i, "score": s} for s, i in scored])
    results = [{"index": i, "relevance_score": s} for s, i in scored]
    return JSONResponse({"model": body.get("model") or config.model, "results": results})


async def _admin_config(request: Request) -> Response:
    state: _State = request.app.state.mock
    changes = await request.json()
    known = {f.name for f in dataclasses.fields(RerankConfig)}
    if not isinstance(changes, dict) or not set(changes) <= known:
        return JSONResponse({"error": f"fields must be among {sorted(known)}"}, status_code=400)
    state.config = dataclasses.replace(state.config, **changes)
    return JSONResponse(dataclasses.asdict(state.config))


async def _admin_stats(request: Request) -> Response:
    state: _State = request.app.state.mock
    return JSONResponse(
        {"requests_total": state.requests_total, "requests_failed": state.requests_failed}
    )


def create_app(config: RerankConfig | None = None) -> Starlette:
    app = Starlette(
        routes=[
            Route("/v1/rerank", _rerank, methods=["POST"]),
            Route("/rerank", _rerank, methods=["POST"]),
            Route("/admin/config", _admin_config, methods=["POST"]),
            Route("/admin/stats", _admin_stats, methods=["GET"]),
        ]
    )
    app.state.mock = _State(dataclasses.replace(config or RerankConfig()))
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--shape", choices=["cohere", "tei"], default="cohere")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--error-status", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    config = RerankConfig(args.shape, args.delay, args.error_rate, args.error_status, args.seed)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    host, port = sock.getsockname()[:2]
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    print(f"mock reranker listening on http://{netloc}/v1", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
