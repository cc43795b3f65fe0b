"""The wait formula of ``ragserve.jobs.estimates`` and the token estimate, without a server."""

from __future__ import annotations

import datetime as dt

import pytest

from ragserve.jobs.estimates import QueueLoad, expected_wait_s, wait_falls_under
from ragserve.jobs.usage import TokenUsage, seconds_to_utc_midnight
from ragserve.text import estimate_tokens


def load(waiting: int, running: int, slots: int, service_s: float | None) -> QueueLoad:
    return QueueLoad("answer", waiting, running, slots, service_s)


def test_unknown_service_time_gives_no_estimate() -> None:
    assert expected_wait_s(load(10, 2, 4, None), 10, default_slots=4) is None


def test_a_free_slot_means_no_wait() -> None:
    assert expected_wait_s(load(0, 3, 4, 10.0), 0, default_slots=4) == 0.0
    assert expected_wait_s(load(1, 2, 4, 10.0), 1, default_slots=4) == 0.0


@pytest.mark.parametrize("running", [0, 1, 2])
def test_the_wait_is_the_completions_needed_over_the_service_rate(running: int) -> None:
    """N jobs in the system on c slots, each taking t: the next one needs N + 1 - c
    completions, one every t / c seconds, whether or not the workers picked them yet."""
    in_system, slots, service_s = 6, 2, 3.0
    waiting = in_system - running
    wait = expected_wait_s(load(waiting, running, slots, service_s), waiting, default_slots=8)
    assert wait == pytest.approx((in_system + 1 - slots) * service_s / slots)


def test_without_workers_the_default_slots_are_assumed() -> None:
    assert expected_wait_s(load(9, 0, 0, 2.0), 9, default_slots=4) == pytest.approx(6 * 2.0 / 4)


def test_retry_after_is_when_the_wait_falls_under_the_limit() -> None:
    assert wait_falls_under(100.0, 60.0) == 40.0
    assert wait_falls_under(10.0, 60.0) == 0.0


def test_token_estimate_counts_cjk_characters_one_each() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("年假有多少天") == 6
    assert estimate_tokens("leave 年假") == 2 + 2  # "leave " is 6 characters: 2 tokens


def test_usage_from_the_pipeline_event_ignores_junk() -> None:
    assert TokenUsage.from_event(None) == TokenUsage()
    event = {"prompt_tokens": 7, "completion_tokens": "9", "embedding_tokens": -1}
    assert TokenUsage.from_event(event) == TokenUsage(prompt_tokens=7)


def test_budget_retry_after_is_the_next_utc_midnight() -> None:
    now = dt.datetime(2026, 11, 29, 23, 59, 30, tzinfo=dt.UTC)
    assert seconds_to_utc_midnight(now) == 30.0
