"""The answer of a job printed as it is generated: tokens as they arrive, restarts on retry."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from ragserve.client import ApiClient, JobEvent


def stream_answer(client: ApiClient, job_id: str, out: Console) -> dict[str, Any]:
    """Print a job's answer token by token as it is generated; return the final job body.

    The final body is fetched with a GET after the stream ends, so the caller gets the same
    shape as ``jobs show`` (sources, timings, error) whatever the stream carried.
    """
    printer = _AnswerPrinter(out)
    for event in client.stream_events(job_id):
        printer.handle(event)
    printer.finish()
    return client.get_job(job_id)


class _AnswerPrinter:
    """What :func:`stream_answer` has shown so far, so a retry or a cached answer prints right.

    A ``running`` status (or any event) with a higher attempt means a retry started and the
    answer restarts: a notice is printed and the new attempt's tokens follow on a fresh line;
    events of an older attempt that arrive late are ignored. If no token was streamed (a cached
    answer, or a custom Runnable that does not stream), the answer is printed from ``done``.
    """

    def __init__(self, out: Console) -> None:
        self.out = out
        self.attempt = 0
        self.printed = False  # tokens of the current attempt are on the current line

    def handle(self, event: JobEvent) -> None:
        data = event.data
        if event.event in ("status", "sources", "token") and not self._current(data):
            return
        if event.event == "token":
            self._write(str(data.get("text", "")), end="")
            self.printed = True
        elif event.event == "done":
            answer = (data.get("result") or {}).get("answer")
            if answer and not self.printed:
                self._write(str(answer))
        elif event.event == "error":
            self.finish()
            self.out.print(
                f"[red]failed:[/red] {data.get('type')}: {data.get('message')}", highlight=False
            )
        elif event.event == "status" and data.get("status") == "cancelled":
            self.finish()
            self.out.print("[magenta]cancelled[/magenta]")

    def _current(self, data: dict[str, Any]) -> bool:
        """Track the attempt; False for an event of an attempt older than the current one."""
        attempt = data.get("attempt")
        if not isinstance(attempt, int) or attempt == self.attempt:
            return True
        if attempt < self.attempt:
            return False
        if self.attempt:
            self.finish()
            self.out.print(f"[yellow]attempt {attempt} started: the answer restarts[/yellow]")
        self.attempt = attempt
        return True

    def _write(self, text: str, end: str = "\n") -> None:
        self.out.print(text, end=end, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def finish(self) -> None:
        """End the line of streamed tokens, if one is open."""
        if self.printed:
            self.out.print()
            self.printed = False
