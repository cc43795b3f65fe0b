"""``python -m ragserve`` is the ``ragserve`` command."""

from ragserve.cli import app

app()
