"""When and how long to wait before sending a request again.

A request is sent again when no answer came (connection refused or reset, a timeout, the
connection closed before an answer) or the answer was 429 or 5xx. Every try carries the
same `webhook-id` and the same body (only the timestamp and signature are new), so the
service sees a retry of one request: a deferral is created once, an execution recorded once.

The default schedule (RetryPolicy()): up to 5 tries of one request; before retry n the
client waits `min(8, 0.5 * 2**(n-1))` seconds scaled by a random factor in [0.5, 1.0]
(so about 0.25-0.5, 0.5-1, 1-2, 2-4 s; 7.5 s at most in all), or the answer's
`Retry-After` when there is one (up to 60 s; a longer one is raised as RateLimited at once).

`wait()` long-polls for as long as it is told to, so it does not count tries: after n
failures in a row it waits `min(10, 0.5 * 2**(n-1))` seconds (same jitter), or the
`Retry-After`, and polls again, until its deadline.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

# No answer came: the request may or may not have been handled, and a retry is safe
# because the service recognises its webhook-id.
NO_ANSWER = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """How requests are retried (see the module docstring for the default schedule)."""

    attempts: int = 5  # tries of one request in all, the first included
    first_delay: float = 0.5  # seconds before the first retry, doubled for each next
    max_delay: float = 8.0  # cap of one computed delay
    max_retry_after: float = 60.0  # longest Retry-After waited for; longer ones are raised
    poll_max_delay: float = 10.0  # cap of one delay between failed long-polls (wait())

    def delay(self, retry: int, cap: float | None = None) -> float:
        """Seconds before retry number `retry` (1 for the first), jittered."""
        full = min(self.max_delay if cap is None else cap, self.first_delay * 2 ** (retry - 1))
        return full * (0.5 + random.random() / 2)

    def pause(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds before retry number `retry`, or None to give up."""
        if retry >= self.attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return self.delay(retry)

    def poll_pause(self, failures: int, retry_after: float | None) -> float:
        """Seconds before the next long-poll after `failures` failed ones in a row."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.delay(failures, cap=self.poll_max_delay)


def worth_retrying(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def retry_after(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds (a number or an HTTP date), if it has one."""
    given = response.headers.get("retry-after")
    if given is None:
        return None
    given = given.strip()
    try:
        seconds = float(given)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(given)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
