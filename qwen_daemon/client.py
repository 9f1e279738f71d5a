"""A tiny stdlib HTTP client for the CLI: talk to the running daemon, nothing more.

Why not Tornado: ``status`` and ``url`` should answer in milliseconds, and importing Tornado (or
the ACP library) would dominate that. Why a private opener: ``urllib`` honours ``http_proxy`` by
default, and a loopback request routed through a corporate proxy would fail or, worse, leak the
bearer token to it.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from qwen_daemon.config import Paths
from qwen_daemon.discovery import DiscoveryInfo, read_discovery

if TYPE_CHECKING:
    import urllib.request


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    # imported here: urllib.request (with http.client, email, ssl) is ~25 ms that `start` never needs
    import urllib.request

    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _loopback_tls_opener() -> urllib.request.OpenerDirector:
    """HTTPS to our own daemon on loopback, found through our 0600 discovery file.

    Its certificate is typically issued for the public name the daemon serves remotely, not for
    127.0.0.1, so hostname checks would always fail here; the discovery file, not the
    certificate, is what tells us whom we are talking to. Used for loopback URLs only.
    """
    import ssl
    import urllib.request

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )


def _opener_for(url: str) -> urllib.request.OpenerDirector:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        return _loopback_tls_opener()
    return _opener()


class ClientError(Exception):
    """The daemon could not be reached or answered with an error; the message says which."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def request_json(
    url: str,
    method: str = "GET",
    token: str | None = None,
    body: object | None = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    """Send one request; return (status, decoded JSON or None). Raise :class:`ClientError`."""
    if not url.startswith(("http://", "https://")):
        raise ClientError(f"refusing to fetch non-HTTP URL {url!r}")
    data = None if body is None else json.dumps(body).encode("utf-8")
    import http.client
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - scheme checked above
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with _opener_for(url).open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
        payload = _decode(raw)
        err = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(err, dict):
            raise ClientError(str(err.get("message", exc.reason)), status, str(err.get("code"))) from None
        raise ClientError(f"HTTP {status} {exc.reason}", status) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ClientError(f"cannot reach the daemon at {url}: {reason}") from None
    except http.client.InvalidURL as exc:  # e.g. a session id typed with a control character
        raise ClientError(f"cannot ask the daemon: {exc}") from None
    return status, _decode(raw)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        return None


def probe_health(info: DiscoveryInfo, timeout: float = 2.0) -> dict[str, Any] | None:
    """``GET /health`` of the daemon ``info`` describes, if it really is that daemon.

    Returns the health document only when its ``instance_id`` and ``pid`` match the discovery
    file, so a reused PID or port answering with something else is never mistaken for ours.
    """
    try:
        status, payload = request_json(info.url + "health", timeout=timeout)
    except ClientError:
        return None
    if status != 200 or not isinstance(payload, dict):
        return None
    if payload.get("instance_id") != info.instance_id or payload.get("pid") != info.pid:
        return None
    return payload


def find_running(paths: Paths, timeout: float = 2.0) -> tuple[DiscoveryInfo, dict[str, Any]] | None:
    """The daemon that is running and answering, with its health document, or None."""
    info = read_discovery(paths)
    if info is None:
        return None
    health = probe_health(info, timeout)
    if health is None:
        return None
    return info, health
