"""When to try again, and how long to wait (the rules every Control Tower client shares).

Retried: 408, 429 and every 5xx, and network errors and timeouts, always with the same eventId and
the same body bytes. The wait is the server's ``Retry-After`` when it sends one (seconds or an HTTP
date, at most ``cap_ms``), otherwise full jitter under ``min(cap_ms, base_ms * 2**(attempt-1))``.
Everything else is an answer: 2xx accepted, other 4xx refused (not retried).
"""

import email.utils
import random
from typing import Optional

DEFAULT_BASE_MS = 200
DEFAULT_CAP_MS = 30_000


def backoff_ceiling_ms(attempt: int, base_ms: int = DEFAULT_BASE_MS, cap_ms: int = DEFAULT_CAP_MS) -> int:
    """The longest wait after failed attempt number ``attempt`` (1-based), before jitter."""
    return min(cap_ms, base_ms * 2 ** min(max(attempt - 1, 0), 40))


def retry_after_ms(header: Optional[str], now_unix: float, cap_ms: int = DEFAULT_CAP_MS) -> Optional[int]:
    """``Retry-After`` in milliseconds (capped), or None when absent or not understood."""
    if header is None:
        return None
    text = header.strip()
    if text.isdigit():
        return min(int(text) * 1000, cap_ms)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(max(int((when.timestamp() - now_unix) * 1000), 0), cap_ms)


def delay_ms(attempt: int, retry_after: Optional[int], base_ms: int, cap_ms: int) -> int:
    if retry_after is not None:
        return retry_after
    return random.randint(0, backoff_ceiling_ms(attempt, base_ms, cap_ms))


def classify(status: int) -> str:
    """``accepted``, ``refused`` or ``retry``."""
    if 200 <= status < 300:
        return "accepted"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "refused"
