"""HTTP to model endpoints (the LLM, the embeddings server): aiohttp, set up as httpx was.

aiohttp rather than httpx on this path because of its cost per request: its HTTP parser is C
(llhttp) and a response's body arrives as the bytes the socket gave, where httpx goes through
httpcore's connection pool, h11 and anyio in Python. ``bench/model_client_cost.py`` against
the mocks on this machine: 40 % or less of httpx's client CPU per streamed answer, 12 % or less
per embedded query (docs/PERFORMANCE.md, "Worker: cheaper per job").

What httpx did by default and is kept: proxies from ``HTTPS_PROXY``/``HTTP_PROXY``/
``NO_PROXY`` (read once per endpoint here; aiohttp's own ``trust_env`` would read them, and
``~/.netrc``, on a thread for every request), and certificates from ``SSL_CERT_FILE``/
``SSL_CERT_DIR`` or else certifi's bundle (``httpx.create_ssl_context``). Connections are
kept alive and not capped: the worker's concurrency already bounds the requests in flight.
"""

from __future__ import annotations

import ssl
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL


def timeouts(read_s: float, connect_s: float) -> aiohttp.ClientTimeout:
    """``read_s`` for the response headers and for each next piece of the body (as httpx's
    read timeout), ``connect_s`` for getting a connection; no bound on the whole exchange."""
    return aiohttp.ClientTimeout(total=None, connect=connect_s, sock_read=read_s)


class ModelSession:
    """The aiohttp session of one model endpoint, opened on first use (a session belongs to
    the event loop that opens it, and the clients are built before a loop runs).

    ``session``: a session of the caller's, used as it is and never closed here.
    """

    def __init__(self, url: str, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owns_session = session is None
        self._request_options: dict[str, Any] = {}
        try:
            proxy, proxy_auth = get_env_proxy_for_url(URL(url))
        except (LookupError, ValueError):  # no proxy for this URL (or no host in it)
            pass
        else:
            self._request_options = {"proxy": proxy, "proxy_auth": proxy_auth}
        self._https = url.startswith("https://")

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            tls: ssl.SSLContext | bool = httpx.create_ssl_context() if self._https else True
            connector = aiohttp.TCPConnector(limit=0, ssl=tls)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def post(
        self, url: str, *, json: Any, headers: dict[str, str], timeout: aiohttp.ClientTimeout
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """``session.post`` (use as ``async with``) with the endpoint's proxy, if any."""
        return self.session.post(
            url, json=json, headers=headers, timeout=timeout, **self._request_options
        )

    async def aclose(self) -> None:
        """Close the session if this object opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
