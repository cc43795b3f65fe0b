"""A bare ``ragserve worker`` loads nothing of the HTTP side (FastAPI, Starlette, uvicorn)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_worker_path_imports_no_http_framework() -> None:
    # A fresh interpreter: this test process has imported FastAPI long ago.
    script = textwrap.dedent(
        """
        import sys
        import ragserve.cli
        from ragserve.server import run_worker
        from ragserve.services import build_worker, open_services
        assert callable(run_worker) and callable(build_worker) and callable(open_services)
        assert "ragserve.jobs.worker" in sys.modules  # the worker itself is there
        http = sorted(
            name for name in sys.modules
            if name.split(".")[0] in ("fastapi", "starlette", "uvicorn")
            or name.startswith("ragserve.api")
        )
        print(",".join(http))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the worker path imported {done.stdout.strip()}"


def test_the_http_path_does_import_them() -> None:
    """The same probe sees FastAPI when it is there (so the test above can fail)."""
    script = "import sys; import ragserve.api.serving; print('fastapi' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
