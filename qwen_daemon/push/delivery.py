"""Getting one notification to one destination: attempts, backoff, and the one line when it fails.

Every destination (a Web Push subscription, a webhook, an ntfy topic) goes through
:func:`deliver` with an ``attempt`` coroutine that raises one of:

- :class:`Gone`: the destination no longer exists (Web Push 404/410): the caller forgets it;
- :class:`Retry`: worth another try (429, 5xx, a network error or a timeout), after
  :data:`RETRY_DELAYS` (longer when the service sent ``Retry-After``, at most
  :data:`MAX_RETRY_AFTER`): three attempts in all, over well under a minute;
- :class:`Refused`: it will not work however often it is sent (400, 401/403: a VAPID key the
  service refuses, 413).

Nothing here blocks the event loop (Web Push runs in a thread pool, channels on Tornado's async
client), nothing raises into the session that caused the notification, and every give-up is
logged once, naming the destination's origin only (an endpoint's path and a topic are secrets of
sorts) and never a key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: pauses before the second and third attempts (tests shorten them)
RETRY_DELAYS: tuple[float, ...] = (2.0, 8.0)
MAX_RETRY_AFTER = 30.0


class Gone(Exception):
    """The destination is gone for good (Web Push 404/410)."""


class Refused(Exception):
    """The destination refused this notification; another attempt would be refused too."""


class Retry(Exception):
    """A failure worth another attempt; ``retry_after``: what the service asked for, in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def classify(status: int, reason: str, retry_after: str | None = None) -> Exception:
    """The exception for an HTTP answer that was not a success."""
    if status in (404, 410):
        return Gone(f"HTTP {status}")
    if status == 429 or status >= 500:
        seconds: float | None = None
        if retry_after and retry_after.strip().isdigit():
            seconds = float(retry_after.strip())
        return Retry(f"HTTP {status} {reason}".strip(), seconds)
    return Refused(f"HTTP {status} {reason}".strip())


async def deliver(
    attempt: Callable[[], Awaitable[None]],
    where: str,
    what: str,
    *,
    on_gone: Callable[[], None] | None = None,
    retries: bool = True,
) -> bool:
    """Make up to ``1 + len(RETRY_DELAYS)`` attempts; True once one succeeded.

    ``where`` names the destination in the log (an origin), ``what`` the notification.
    ``retries=False`` (the daemon is stopping): one attempt only.
    """
    delays = RETRY_DELAYS if retries else ()
    for number in range(len(delays) + 1):
        try:
            await attempt()
            return True
        except Gone as exc:
            if on_gone is not None:
                log.info("push to %s: the subscription is gone (%s); removed it", where, exc)
                on_gone()
            else:
                log.warning("push to %s: %s not delivered, the address is gone (%s)", where, what, exc)
            return False
        except Refused as exc:
            log.warning("push to %s refused %s (%s); not retried", where, what, exc)
            return False
        except Retry as exc:
            if number >= len(delays):
                log.warning("push to %s: gave up on %s after %d attempt(s): %s", where, what, number + 1, exc)
                return False
            pause = delays[number]
            if exc.retry_after is not None:
                pause = max(pause, min(exc.retry_after, MAX_RETRY_AFTER))
            log.debug("push to %s failed (%s); retrying in %.1f s", where, exc, pause)
            await asyncio.sleep(pause)
        except asyncio.CancelledError:
            log.warning("push to %s: %s dropped (the daemon stopped before it was sent)", where, what)
            raise
        except Exception:
            log.exception("push to %s: %s failed unexpectedly; not retried", where, what)
            return False
    return False  # pragma: no cover - the loop always returns
