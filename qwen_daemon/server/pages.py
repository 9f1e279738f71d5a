"""Browser pages — the dashboard ``/`` and the session page ``/s/{id}`` — and their static files.

Why thin server-rendered shells plus static ES modules: the UI is served from the installed
package with no CDN and no build step, and everything live (sessions, events) comes through the
same REST API and WebSocket every other client uses, so the browser gets no private back door.

Pages log in from ``?token=`` (here: it makes the browser a device, ``devices.py``) and otherwise
need the device cookie (checked in ``base.py``, with every other credential); without it they
answer a small 401 page saying how to get the URL. Their errors are HTML, not JSON. The
Content-Security-Policy allows only our own scripts and styles — no inline script, no inline
style, no eval — and only the DOMPurify Trusted Types policy may write HTML; the one other
policy, ``qwen-daemon-worker``, turns exactly ``/sw.js`` into a script URL to register the
service worker (``js/worker.js``).

Static files are public (the login page needs its stylesheet; nothing in them is secret), come
only from ``qwen_daemon/web/static`` with a fixed table of content types, and anything else —
directories, dotfiles, unknown extensions, paths leaving the root — is a plain 404.

Two of them are also served at the root, where browsers need them (:class:`AppFileHandler`): the
web-app manifest ``/manifest.webmanifest`` and the service worker ``/sw.js`` (a worker's scope can
be no wider than its script's folder, and it must cover ``/`` and ``/s/…``).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import tornado.template
import tornado.web

from qwen_daemon import __version__
from qwen_daemon.devices import device_name
from qwen_daemon.server.base import COOKIE_DAYS, BaseHandler, secrets_equal
from qwen_daemon.server.errors import error_reply
from qwen_daemon.server.sessions_api import _ID

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"
_TEMPLATES = tornado.template.Loader(str(WEB_DIR / "templates"))

#: The pages' policy. ``'self'`` covers ws:/wss: to our own host (CSP Level 3).
PAGE_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types dompurify qwen-daemon-worker",
    ]
)

#: Every file type we serve, with its exact Content-Type; anything else is a 404.
CONTENT_TYPES: dict[str, str] = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
}


class PageHandler(BaseHandler):
    """Base for HTML pages: token login, cookie auth, the strict CSP and HTML error pages."""

    login_from_query = True
    available_during_shutdown = False

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", PAGE_CSP)

    def login_from_token(self) -> bool:
        """On a page, ``?token=<valid>``: log in as a device, redirect to the URL without the token.

        Returns True when it answered (the redirect). An invalid token changes nothing: the page
        then needs the cookie as usual.
        """
        given = self.get_query_argument("token", None)
        expected = self.context.daemon.token
        if given is None or self.request.method not in ("GET", "HEAD") or not secrets_equal(given, expected):
            return False
        self.log_in_device()
        kept = [
            (k, v)
            for k, v in urllib.parse.parse_qsl(self.request.query, keep_blank_values=True)
            if k != "token"
        ]
        # "/" + lstrip: a path like //evil.example must not become a protocol-relative redirect
        target = "/" + self.request.path.lstrip("/")
        self.redirect(target + ("?" + urllib.parse.urlencode(kept) if kept else ""))
        return True

    def log_in_device(self) -> None:
        """Make this browser a device (its cookie holds the new secret). One that already is a
        device stays that device: logging in again must not leave a trail of duplicates."""
        devices = self.context.devices
        if devices.lookup(self.get_cookie(self.cookie_name) or "") is not None:
            return
        device, secret = devices.create(device_name(self.request.headers.get("User-Agent")))
        self.device_id = device.id
        self.set_cookie(
            self.cookie_name,
            secret,
            path="/",
            expires_days=COOKIE_DAYS,
            httponly=True,
            samesite="Strict",
            secure=self.request.protocol == "https" or self.context.daemon.public_base.startswith("https:"),
        )

    def render_page(self, template: str, status: int = 200, **namespace: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        page = _TEMPLATES.load(template).generate(version=__version__, **namespace)
        self.finish(page)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The JSON answer's :func:`error_reply`, rendered as a page (a browser is reading)."""
        exc_info = kwargs.get("exc_info")
        reply = error_reply(exc_info[1] if exc_info else None, status_code)
        status, code, message = reply.status, reply.code, reply.message
        self.clear_header("Location")
        if code == "payload_too_large":  # no page asked for it: the same JSON 413 as every route
            super().write_error(status_code, **kwargs)
        elif status == 401:
            self.render_page("login.html", status=401)
        elif code == "session_not_found":
            self.render_page(
                "error.html",
                status=404,
                heading="No such session",
                message=(
                    "There is no session at this address. It may have been deleted; "
                    "sessions are otherwise kept, across daemon restarts, until you delete them."
                ),
            )
        else:
            self.render_page("error.html", status=status, heading=f"Error {status}", message=message)


class DashboardPage(PageHandler):
    def get(self) -> None:
        self.render_page("dashboard.html")


class SessionPage(PageHandler):
    def get(self, session_id: str) -> None:
        session = self.manager.get(session_id)  # SessionNotFound → the 404 page
        detail = session.detail()
        # What the page needs before its stream connects, so it shows at once: the modes (the
        # selector is there even while the agent sleeps), the failure, whether it is archived.
        first = {key: detail.get(key) for key in ("modes", "mode", "failure", "archived", "state")}
        self.render_page("session.html", session=detail, detail_json=json.dumps(first))


class StaticHandler(BaseHandler, tornado.web.StaticFileHandler):
    """Files under ``web/static``: public, typed by the table above, revalidated by ETag."""

    auth_required = False
    available_during_shutdown = True

    def set_default_headers(self) -> None:
        super().set_default_headers()
        # small local files: always revalidate (ETag), so an upgraded daemon never serves stale UI
        self.set_header("Cache-Control", "no-cache")

    def compute_etag(self) -> str | None:
        return tornado.web.StaticFileHandler.compute_etag(self)

    def get_content_type(self) -> str:
        assert self.absolute_path is not None
        return CONTENT_TYPES[os.path.splitext(self.absolute_path)[1].lower()]

    def parse_url_path(self, url_path: str) -> str:
        # refuse before Tornado's own checks answer 403: every kind of "no" is the same 404
        parts = url_path.split("/")
        if any(not part or part.startswith(".") or "\\" in part or "\x00" in part for part in parts):
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        real_root = os.path.realpath(root)  # realpath: a symlink must not lead out either
        real = os.path.realpath(absolute_path)
        relative = os.path.relpath(real, real_root)
        if (
            relative.startswith("..")
            or any(part.startswith(".") for part in Path(relative).parts)
            or os.path.splitext(real)[1].lower() not in CONTENT_TYPES
            or not os.path.isfile(real)
        ):
            raise tornado.web.HTTPError(404)  # no listing, no traversal, nothing to tell apart
        return super().validate_absolute_path(root, absolute_path)


class AppFileHandler(StaticHandler):
    """``/manifest.webmanifest`` and ``/sw.js``: public, like every static file, and on purpose.

    Browsers fetch the manifest without cookies (unless the page's link asks for credentials) and
    install or update the service worker in the background, where a login page instead of the
    script would fail the update; neither holds anything secret (the app's name and icons, and
    code anyone can read in the package). Everything they lead to — pages and API — stays
    deny-by-default: the worker's own requests carry the login cookie and the same-origin proof
    like the pages' requests.

    The worker's script response sets the policy the worker runs under (its CSP): it may talk to
    our own origin (answering a permission from a notification) and nothing else.
    """

    WORKER_CSP = "default-src 'none'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'"

    def set_default_headers(self) -> None:
        super().set_default_headers()
        if self.request.path == "/sw.js":
            self.set_header("Content-Security-Policy", self.WORKER_CSP)


routes: list[Any] = [
    (r"/", DashboardPage),
    (rf"/s/{_ID}", SessionPage),
    (r"/static/(.+)", StaticHandler, {"path": str(STATIC_DIR)}),
    (r"/(sw\.js|manifest\.webmanifest)", AppFileHandler, {"path": str(STATIC_DIR)}),
]
