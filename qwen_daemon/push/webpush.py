"""Sending one Web Push message (RFC 8030 delivery, RFC 8291 ``aes128gcm``, RFC 8292 VAPID).

All of the crypto is pywebpush's (with py_vapid and http_ece): this module only calls
``webpush()`` and turns its outcome into the deliveries' vocabulary (``delivery.py``).

``webpush()`` is blocking (``requests``) and importing pywebpush costs ~240 ms (it pulls in
aiohttp and requests), so both happen in a small thread pool of the daemon's, never on the event
loop and never at start: the first push pays for the import. Each worker thread keeps a
``requests.Session``, so pushes to the same service reuse its TLS connection, and follows no
redirect.
"""

from __future__ import annotations

import threading
from typing import Any

from qwen_daemon.push.delivery import Refused, Retry, classify

#: seconds a push service gets to answer one request
REQUEST_TIMEOUT = 10.0
#: how long a push service keeps a message for a device that is offline (RFC 8030 ``TTL``)
TTL = 24 * 3600

_local = threading.local()


def send(vapid: Any, info: dict[str, Any], data: str, sub: str, urgency: str, ttl: int = TTL) -> None:
    """POST one encrypted message; raises Gone, Retry or Refused (``delivery.py``). Blocking."""
    import requests
    from pywebpush import WebPushException, webpush

    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.trust_env = False  # a proxy from the environment must not see every push
        # no push service redirects a push (RFC 8030); following one would send it (a 307 repeats
        # the POST) to any URL, http:// and internal ones included, and call it delivered
        session.max_redirects = 0
    try:
        webpush(
            info,
            data=data,
            vapid_private_key=vapid,
            vapid_claims={"sub": sub},  # a fresh dict: webpush() writes aud and exp into it
            ttl=ttl,
            timeout=REQUEST_TIMEOUT,
            headers={"Urgency": urgency},
            requests_session=session,
        )
    except WebPushException as exc:
        status = exc.status_code
        if status is None:
            raise Retry("no answer") from None
        response = exc.response
        reason = str(getattr(response, "reason", "") or "")[:100]
        raise classify(status, reason, exc.retry_after) from None
    except requests.TooManyRedirects:
        raise Refused("a redirect (not followed)") from None
    except requests.RequestException as exc:
        # only the kind of failure: the text of requests' exceptions holds the whole endpoint
        raise Retry(type(exc).__name__) from None
