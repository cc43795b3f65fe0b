"""The ``ragserve`` command: the typer app (``commands``), and what its commands print.

``commands`` holds the thin command functions and the one mapping of errors to exit codes;
``render`` and ``answer`` draw API bodies and live answers in the terminal; ``ingest`` and
``demo`` are the two commands with a workflow of their own.
"""

from ragserve.cli.commands import app

__all__ = ["app"]
