"""Devices and pairing over HTTP: ``/api/devices``, ``/api/pairing``, and the pages ``/pair`` and
``/devices``.

The rules live in ``qwen_daemon/devices.py``; here only input and answers. ``/pair`` is the one
page that answers without a credential (the code *is* the credential) — the Host allowlist still
applies and wrong codes count as failed logins (``throttle.py``).

Opening ``/pair?code=`` does not log in by itself: it shows a page whose button POSTs the code, and
only that POST spends it (its answer: a 303 to ``/``, so the code leaves the address bar). People
move a pairing URL to their phone through a chat or a mail to themselves, and link previews, mail
scanners and QR apps fetch every URL they see with a GET: were the GET the login, such a bot would
spend the code and hold the device's cookie — full control of the machine — in its answer.

A used or expired code answers 410 with a page saying so, an unknown one 404, too many wrong
attempts 429; each page says how to get a new code.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from qwen_daemon.contract.bodies import RenameDevice
from qwen_daemon.devices import iso
from qwen_daemon.errors import PayloadTooLarge
from qwen_daemon.server.base import BaseHandler
from qwen_daemon.server.pages import PageHandler
from qwen_daemon.server.sessions_api import _ID

if TYPE_CHECKING:
    from qwen_daemon.contract.responses import Pairing

#: the pages' words for a code that does not log in: (status, heading, first sentence)
_REFUSED_CODE = {
    "used": (410, "This pairing code was already used", "A pairing code logs in one browser, once."),
    "expired": (410, "This pairing code has expired", "A pairing code is valid for two minutes."),
    "unknown": (404, "Unknown pairing code", "This address does not hold a pairing code this daemon made."),
}
#: largest ``POST /pair`` body (``code=`` and a 22-character code; anyone may send one)
MAX_PAIR_BODY = 1024
_NEW_CODE = (
    "For a new one, press “Add a device” on the dashboard of a browser that is logged in, "
    "or run qwen-daemon pair on the daemon's machine, and scan the new QR code."
)


def qr_svg(text: str) -> str:
    """The QR code of ``text`` as an inline ``<svg>`` (segno: no encoder of ours). Imported here,
    not at start: it brings urllib.request and xml.sax, ~10 ms and ~1 MiB every daemon would pay."""
    import segno

    code = segno.make(text, error="m")
    svg: str = code.svg_inline(
        scale=4, border=2, omitsize=True, svgclass="qr", lineclass=None, dark="#000", light="#fff"
    )
    return svg


class DevicesHandler(BaseHandler):
    def get(self) -> None:
        devices = [d.to_json(current=d.id == self.device_id) for d in self.context.devices.list()]
        self.write_json({"devices": devices})


class DeviceHandler(BaseHandler):
    def patch(self, device_id: str) -> None:
        device = self.context.devices.rename(device_id, self.body(RenameDevice)["name"])
        self.write_json(device.to_json(current=device.id == self.device_id))

    def delete(self, device_id: str) -> None:
        self.context.devices.revoke(device_id)
        self.set_status(204)
        self.finish()


class PairingHandler(BaseHandler):
    """A new one-time pairing code, its URL (on ``public_url`` when set) and that URL's QR code."""

    def post(self) -> None:
        code, expires = self.context.pairing.issue(self.device_id)
        url = f"{self.context.daemon.public_base}pair?{urllib.parse.urlencode({'code': code})}"
        body: Pairing = {"url": url, "code": code, "expires_at": iso(expires), "svg": qr_svg(url)}
        self.write_json(body, status=201)


class PairPage(PageHandler):
    """``GET /pair?code=``: a page asking to log this browser in; ``POST /pair`` (its button, the
    form field ``code``): a good code makes this browser a device. Anything else says why not."""

    auth_required = False
    login_from_query = False

    def check_trusted_origin(self, origin: str) -> bool:
        """The form's POST from our own page says ``Origin: null`` (the pages' policy is
        no-referrer), and over plain http to a name (a LAN address, a proxy) the browser sends no
        ``Sec-Fetch-Site`` to tell it apart; one that does, and says cross-site, is refused. Little
        to guard anyway: the code in the body is the credential."""
        if origin == "null" and "Sec-Fetch-Site" not in self.request.headers:
            return True
        return super().check_trusted_origin(origin)

    def admit_body(self) -> Awaitable[None] | None:
        if self.request.method == "POST":
            declared = self._declared_length()
            if declared is None or declared > MAX_PAIR_BODY:  # a form with one short field
                raise PayloadTooLarge(f"a pairing form is at most {MAX_PAIR_BODY} bytes, with a length")
        return super().admit_body()

    def get(self) -> None:
        code = self.get_query_argument("code", "")
        outcome = self.context.pairing.check(code)
        if outcome != "ok":
            self.refuse(outcome)
            return
        host = urllib.parse.urlsplit(self.context.daemon.public_base).netloc
        self.render_page("pair.html", code=code, host=host)

    def post(self) -> None:
        form = urllib.parse.parse_qs(self.request_body.decode("utf-8", "replace"))  # <= MAX_PAIR_BODY
        code = (form.get("code") or [""])[-1]
        outcome = self.context.pairing.redeem(code)
        if outcome == "ok":
            self.log_in_device()
            self.redirect("/", status=303)
            return
        self.refuse(outcome)

    def refuse(self, outcome: str) -> None:
        """The page for a code that does not log in (429 once this address guessed too often)."""
        wait = self.context.auth_throttle.fail(self.request.remote_ip or "?")
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
