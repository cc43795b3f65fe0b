"""TLS to PostgreSQL with ``sslmode=verify-full`` and ``sslrootcert``: a CA and a server
certificate for localhost are made here with openssl.

- A whole ``ragserve serve`` (psycopg pool, LISTEN connection, pgqueuer over asyncpg) runs over
  verified TLS to the session's PostgreSQL, behind a TLS front (``tls_proxy``: the wheel's
  PostgreSQL is built without OpenSSL); the wrong CA is refused with a one-line error naming
  the cause and not the password.
- When the machine has a PostgreSQL built with OpenSSL (Debian's), the same verification runs
  against it with ``ssl = on`` itself; skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from support import ROOT, child_env, ragserve_command, running_service, service_env
from tenants.helpers import ingest
from tenants.tls_proxy import TlsPgProxy, server_context

sys.path.insert(0, str(ROOT / "bench"))
from cluster import StandalonePostgres

PASSWORD = "tls-pg-secret-5c2e"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(cwd: Path, name: str) -> None:
    openssl(
        cwd, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
        "-subj", f"/CN=ragserve test {name}",
    )  # fmt: skip


def make_server_cert(cwd: Path) -> None:
    """``server.crt`` for localhost and 127.0.0.1, signed by ``ca``."""
    (cwd / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
    )
    openssl(
        cwd, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
    )  # fmt: skip
    openssl(
        cwd, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    make_ca(folder, "ca")
    make_ca(folder, "other-ca")
    make_server_cert(folder)
    return folder


def url(port: int, database: str, ca: Path, mode: str = "verify-full") -> str:
    return (
        f"postgresql://postgres:{PASSWORD}@localhost:{port}/{database}"
        f"?sslmode={mode}&sslrootcert={ca}"
    )


@pytest.fixture
def tls_front(certs: Path, new_database_url: Callable[[], str]) -> Iterator[tuple[TlsPgProxy, str]]:
    """A new database behind the TLS front: the proxy and the database's name."""
    direct = urlsplit(new_database_url())
    query = parse_qs(direct.query)
    socket = f"{query['host'][0]}/.s.PGSQL.{query.get('port', ['5432'])[0]}"
    proxy = TlsPgProxy(
        lambda: asyncio.open_unix_connection(socket),
        server_context(str(certs / "server.crt"), str(certs / "server.key")),
    )
    proxy.start()
    yield proxy, direct.path.lstrip("/")
    proxy.close()


def test_ragserve_runs_over_verified_tls(
    certs: Path, tls_front: tuple[TlsPgProxy, str], tmp_path: Path
) -> None:
    proxy, database = tls_front
    env = service_env(url(proxy.port, database, certs / "ca.crt"))
    with running_service(env, tmp_path) as (base, proc), httpx.Client(base_url=base) as client:
        ingest(client, "tls", "note.md", "The server room door code changes every Monday.")
        answer = client.post(
            "/v1/ask", json={"query": "When does the door code change?", "collection": "tls"}
        ).json()
        assert answer["status"] == "succeeded" and "Monday" in answer["result"]["answer"]
        log = proc.log()
    # The pool, the LISTEN connection and the queue's asyncpg driver: all over TLS.
    assert proxy.tls_sessions >= 3 and proxy.refused == 0, (proxy.tls_sessions, proxy.refused)
    assert PASSWORD not in log

    for ca, mode, why in [
        ("other-ca.crt", "verify-full", "certificate verify failed"),
        ("ca.crt", "disable", "server closed the connection"),
    ]:
        refused = subprocess.run(
            ragserve_command("db", "migrate"),
            env=child_env(service_env(url(proxy.port, database, certs / ca, mode))),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 1, refused
        assert why in refused.stderr, refused.stderr
        assert PASSWORD not in refused.stderr and "postgres:***@" in refused.stderr


def system_postgres_bin() -> Path | None:
    """The bin folder of a PostgreSQL on the machine (Debian's has OpenSSL), if any."""
    found = shutil.which("postgres")
    if found is None:
        return None
    folder = Path(os.path.realpath(found)).parent
    return folder if (folder / "initdb").exists() and (folder / "pg_ctl").exists() else None


def test_verify_full_against_a_server_with_ssl_on(certs: Path) -> None:
    bin_dir = system_postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL built with OpenSSL on this machine (the wheel's has none)")
    pg = StandalonePostgres()
    pg.bin = bin_dir
    try:
        pg.init()
        for name in ("server.crt", "server.key"):
            target = pg.data / name
            shutil.copy(certs / name, target)
            target.chmod(0o600)
            if pg.user is not None:
                os.chown(target, pg.user.pw_uid, pg.user.pw_gid)
        with (pg.data / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        hba = pg.data / "pg_hba.conf"
        hba.write_text("hostnossl all all all reject\n" + hba.read_text())  # TLS or nothing
        try:
            pg.start()
        except RuntimeError as exc:
            if "SSL is not supported" in str(exc):
                pytest.skip(f"{bin_dir}/postgres is built without OpenSSL")
            raise
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute(f"ALTER ROLE postgres PASSWORD '{PASSWORD}'")
        with psycopg.connect(url(pg.port, "postgres", certs / "ca.crt")) as conn:
            query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            assert conn.execute(query).fetchone() == (True,)
        with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
            psycopg.connect(url(pg.port, "postgres", certs / "other-ca.crt"))
        with pytest.raises(psycopg.OperationalError, match="no encryption"):
            psycopg.connect(url(pg.port, "postgres", certs / "ca.crt", mode="disable"))
    finally:
        pg.close()
