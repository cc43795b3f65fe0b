"""An answer streamed to someone who cannot take text back (an OpenAI client, a LangChain
``astream`` consumer), from a job whose tokens may come from several attempts.

A job's ``token`` events carry their attempt. When a retry starts, the new attempt streams its
answer from the start again. Text already shown cannot be retracted, so only what extends it
is passed on; the final answer (from ``done``) supplies whatever no token did (a cached
answer streams no token at all). In the rare case that the retry's answer differs from what
was shown, the full final answer follows a short note, so the reader ends with the real one.

A leaf module: the HTTP side and the LangChain helpers both use it.
"""

from __future__ import annotations

REGENERATED = "(ragserve: a retry regenerated the answer; here it is in full)"


class StreamedAnswer:
    """What has been shown of one answer, and what to show next."""

    def __init__(self) -> None:
        self.shown = ""
        self._attempts: dict[int, str] = {}

    def token(self, text: str, attempt: int = 0) -> str:
        """The text to show for a ``token`` event ("" if it only repeats what was shown)."""
        so_far = self._attempts.get(attempt, "") + text
        self._attempts[attempt] = so_far
        if len(so_far) <= len(self.shown) or not so_far.startswith(self.shown):
            return ""
        new, self.shown = so_far[len(self.shown) :], so_far
        return new

    def finish(self, answer: str) -> str:
        """The rest of the final ``answer`` that was not shown yet."""
        if answer.startswith(self.shown):
            rest = answer[len(self.shown) :]
        else:
            rest = f"\n\n{REGENERATED}\n\n{answer}"
        self.shown = answer
        return rest
