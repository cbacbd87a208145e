"""When a failed delivery is tried again: exponential backoff with full jitter, up to a
maximum age after the first attempt (then None: an exception for manual action)."""
from __future__ import annotations

import random
from datetime import datetime, timedelta

from axiom_dagster.config.destinations import RetryPolicy


def backoff_seconds(policy: RetryPolicy, attempts: int, rng: random.Random | None = None) -> float:
    """The wait after the `attempts`-th failed attempt (1-based)."""
    ceiling = min(policy.max_seconds, policy.initial_seconds * policy.multiplier ** max(attempts - 1, 0))
    if not policy.jitter:
        return ceiling
    # Full jitter spreads the retries of many instances failed together over the window.
    return (rng or random).uniform(0, ceiling)


def next_attempt(policy: RetryPolicy, attempts: int, first_attempt_at: datetime, now: datetime) -> datetime | None:
    at = now + timedelta(seconds=backoff_seconds(policy, attempts))
    if (at - first_attempt_at).total_seconds() > policy.max_age_seconds:
        return None
    return at
