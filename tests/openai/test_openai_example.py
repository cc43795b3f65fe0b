"""``examples/openai_sdk.py`` runs as documented against a real service."""

from __future__ import annotations

import subprocess
import sys

from served import Served

from support import ROOT


def test_openai_sdk_example_runs(served: Served) -> None:
    question = "What is the guest Wi-Fi network called?"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "openai_sdk.py"),
            "--base-url",
            served.openai_base,
            "--model",
            "handbook",
            question,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "models: faq, handbook"
    assert lines[1] == "streamed: The guest Wi-Fi network is called Lumen-Guest. [1]"
    job_line = next(line for line in lines if line.startswith("job: "))
    job_id = job_line.split()[1]
    assert served.wait_job(job_id)["query"] == question
    assert "[1] wifi.md" in lines
    assert lines[-1] == f"follow-up asked as: {question} Why is that?"
