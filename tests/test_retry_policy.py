"""Retry delays for any retry count a manifest allows (max_retries is a 64-bit integer)."""

from __future__ import annotations

from chronctl.jobs import RetryPolicy


def test_exponential_backoff_past_a_thousand_retries_stays_a_number() -> None:
    """2 ** 1024 is no float: the 1,025th retry used to raise OverflowError in the worker."""
    policy = RetryPolicy(max_retries=2**63 - 1, delay=0.5, max_delay=3600.0, jitter=False)
    assert [policy.delay_for(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert policy.delay_for(1_025) == policy.delay_for(10**18) == 3600.0
    assert RetryPolicy(delay=0.0, jitter=False).delay_for(5_000) == 0.0
