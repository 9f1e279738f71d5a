"""Devices and pairing over HTTP: ``/api/devices``, ``/api/pairing``, and the pages ``/pair`` and
``/devices``.

The rules live in ``qwen_daemon/devices.py``; here only input and answers. ``/pair?code=`` is the
one page that answers without a credential (the code *is* the credential) — the Host allowlist
still applies, wrong codes count as failed logins (``throttle.py``), and a good code's answer is a
303 to ``/`` so the code leaves the address bar and the history at once.

A used or expired code answers 410 with a page saying so, an unknown one 404, too many wrong
attempts 429; each page says how to get a new code.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import segno

from qwen_daemon.devices import iso
from qwen_daemon.errors import BadRequest
from qwen_daemon.server.base import BaseHandler
from qwen_daemon.server.pages import PageHandler
from qwen_daemon.server.sessions_api import _ID

#: the pages' words for a code that does not log in: (status, heading, first sentence)
_REFUSED_CODE = {
    "used": (410, "This pairing code was already used", "A pairing code logs in one browser, once."),
    "expired": (410, "This pairing code has expired", "A pairing code is valid for two minutes."),
    "unknown": (404, "Unknown pairing code", "This address does not hold a pairing code this daemon made."),
}
_NEW_CODE = (
    "For a new one, press “Add a device” on the dashboard of a browser that is logged in, "
    "or run qwen-daemon pair on the daemon's machine, and scan the new QR code."
)


def qr_svg(text: str) -> str:
    """The QR code of ``text`` as an inline ``<svg>`` (segno: no encoder of ours)."""
    code = segno.make(text, error="m")
    svg: str = code.svg_inline(
        scale=4, border=2, omitsize=True, svgclass="qr", lineclass=None, dark="#000", light="#fff"
    )
    return svg


class DevicesHandler(BaseHandler):
    def get(self) -> None:
        devices = [d.to_json(current=d.id == self.device_id) for d in self.daemon.devices.list()]
        self.write_json({"devices": devices})


class DeviceHandler(BaseHandler):
    def patch(self, device_id: str) -> None:
        body = self.json_body()
        unknown = set(body) - {"name"}
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        if "name" not in body:
            raise BadRequest("missing field 'name'")
        device = self.daemon.devices.rename(device_id, body["name"])
        self.write_json(device.to_json(current=device.id == self.device_id))

    def delete(self, device_id: str) -> None:
        self.daemon.devices.revoke(device_id)
        self.set_status(204)
        self.finish()


class PairingHandler(BaseHandler):
    """A new one-time pairing code, its URL (on ``public_url`` when set) and that URL's QR code."""

    def post(self) -> None:
        code, expires = self.daemon.pairing.issue(self.device_id)
        url = f"{self.daemon.public_base}pair?{urllib.parse.urlencode({'code': code})}"
        body = {"url": url, "code": code, "expires_at": iso(expires), "svg": qr_svg(url)}
        self.write_json(body, status=201)


class PairPage(PageHandler):
    """``GET /pair?code=``: a good code makes this browser a device; anything else says why not."""

    auth_required = False
    login_from_query = False

    def get(self) -> None:
        code = self.get_query_argument("code", "")
        outcome = self.daemon.pairing.redeem(code)
        if outcome == "ok":
            self.log_in_device()
            self.redirect("/", status=303)
            return
        wait = self.daemon.auth_throttle.fail(self.request.remote_ip or "?")
        if wait:
            retry = str(int(wait + 0.999))
            self.set_header("Retry-After", retry)
            self.render_page(
                "error.html",
                status=429,
                heading="Too many attempts",
                message=f"Too many wrong pairing codes from this address; try again in {retry} s. "
                + _NEW_CODE,
            )
            return
        status, heading, first = _REFUSED_CODE[outcome]
        self.render_page("error.html", status=status, heading=heading, message=f"{first} {_NEW_CODE}")


class DevicesPage(PageHandler):
    def get(self) -> None:
        self.render_page("devices.html")


routes: list[Any] = [
    (r"/api/devices", DevicesHandler),
    (rf"/api/devices/{_ID}", DeviceHandler),
    (r"/api/pairing", PairingHandler),
    (r"/pair", PairPage),
    (r"/devices", DevicesPage),
]
