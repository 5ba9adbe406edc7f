"""API key entries: plain keys serve every twin, `key:twin` serves one; each key has a rate limit."""
from __future__ import annotations

import pytest
from pydantic import SecretStr
from twin_inference.auth import (
    ApiKeys,
    Forbidden,
    RateLimited,
    RateLimiter,
    Unauthorized,
)


def keys(*entries: str) -> ApiKeys:
    return ApiKeys.from_settings([SecretStr(entry) for entry in entries])


def test_no_keys_configured_means_an_open_api():
    assert keys().scope_of(None).allows("anyone")


def test_a_plain_key_serves_every_twin_and_a_bound_key_one():
    api_keys = keys("everything", "only:ada", "with:colon:grace")

    assert api_keys.scope_of("everything").allows("grace")
    assert api_keys.scope_of("only").allows("ada") and not api_keys.scope_of("only").allows("grace")
    # The part after the last ":" names the twin: the key itself may hold colons.
    assert api_keys.scope_of("with:colon").twin_id == "grace"
    with pytest.raises(Forbidden, match="limited to the twin 'ada'"):
        api_keys.scope_of("only").require("grace")


@pytest.mark.parametrize("presented", [None, "", "only:ada", "nope"])
def test_missing_or_unknown_keys_are_refused(presented):
    with pytest.raises(Unauthorized):
        keys("everything", "only:ada").scope_of(presented)


def test_an_entry_without_a_key_is_a_configuration_error():
    with pytest.raises(ValueError, match="empty key"):
        keys(":ada")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_a_burst_of_its_rate_then_waits_for_the_refill():
    clock = FakeClock()
    limiter = RateLimiter(per_minute=3, clock=clock)
    for _ in range(3):
        limiter.take("key:a")
    with pytest.raises(RateLimited) as caught:
        limiter.take("key:a")
    assert caught.value.retry_after == 20  # one request every 60/3 s
    limiter.take("key:b")  # every key has its own bucket

    clock.now += 19.5
    with pytest.raises(RateLimited) as caught:
        limiter.take("key:a")
    assert caught.value.retry_after == 1  # rounded up: never "retry after 0"
    clock.now += 0.5
    limiter.take("key:a")
    with pytest.raises(RateLimited):
        limiter.take("key:a")


def test_a_long_pause_refills_no_more_than_one_burst():
    clock = FakeClock()
    limiter = RateLimiter(per_minute=2, clock=clock)
    limiter.take("key:a")
    clock.now += 3600
    limiter.take("key:a")
    limiter.take("key:a")
    with pytest.raises(RateLimited):
        limiter.take("key:a")


def test_zero_means_unlimited():
    limiter = RateLimiter(per_minute=0)
    for _ in range(1000):
        limiter.take("key:a")


def test_buckets_that_refilled_are_forgotten_once_there_are_many_callers():
    clock = FakeClock()
    limiter = RateLimiter(per_minute=1, clock=clock, max_idle_buckets=2)
    limiter.take("client:1")
    limiter.take("client:2")
    clock.now += 61
    limiter.take("client:3")  # the third caller finds two full buckets: dropped

    assert set(limiter._buckets) == {"client:3"}
    limiter.take("client:1")  # a forgotten caller starts again with a full bucket
