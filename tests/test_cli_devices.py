"""``qwen-daemon pair`` and ``qwen-daemon devices`` as a user runs them, against a real daemon
started by the CLI (each test has its own HOME; ``daemon_reaper`` kills what a test leaves)."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from tests.support.probe import cli, start_daemon

pytestmark = [pytest.mark.usefixtures("daemon_reaper"), pytest.mark.timeout(120)]

PHONE_UA = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/131.0.0.0 Mobile Safari/537.36"


def get(
    url: str, headers: dict[str, str], method: str = "GET", body: str | None = None
) -> http.client.HTTPResponse:
    """One request (GET unless told), redirects not followed (urllib would follow the 303 and lose
    the cookie)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    conn.request(method, target, body=body, headers=headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def test_pair_logs_a_browser_in_and_devices_lists_renames_and_revokes_it(paths: Paths) -> None:
    start_daemon()
    try:
        info = read_discovery(paths)
        assert info is not None
        paired = cli("pair", "--json")
        assert paired.returncode == 0, paired.stderr
        doc = json.loads(paired.stdout)
        assert set(doc) == {"url", "code", "expires_at"}
        assert doc["url"] == f"{info.url}pair?code={doc['code']}"

        assert get(doc["url"], {"User-Agent": PHONE_UA}).status == 200  # the page with the button
        form = {"User-Agent": PHONE_UA, "Content-Type": "application/x-www-form-urlencoded"}
        resp = get(info.url + "pair", form, "POST", urllib.parse.urlencode({"code": doc["code"]}))
        assert resp.status == 303 and resp.getheader("Location") == "/"
        morsel = next(iter(SimpleCookie(resp.getheader("Set-Cookie")).values()))
        cookie = {"Cookie": f"{morsel.key}={morsel.value}"}
        assert get(info.url + "api/sessions", cookie).status == 200
        assert get(doc["url"], {}).status == 410  # once

        listed = cli("devices")
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.splitlines()
        assert header.split() == ["ID", "LAST", "SEEN", "ADDED", "NAME"]
        device_id = row.split()[0]
        assert row.endswith("Chrome on Android")
        as_json = json.loads(cli("devices", "--json").stdout)
        assert [d["id"] for d in as_json] == [device_id] and as_json[0]["current"] is False

        renamed = cli("devices", "rename", device_id, "Pixel in the kitchen")
        assert renamed.returncode == 0 and "name=Pixel in the kitchen" in renamed.stdout
        refused = cli("devices", "rename", device_id, "red\x1b[31mtext")
        assert refused.returncode == 1 and "control character U+001B" in refused.stderr
        assert "\x1b" not in refused.stdout + refused.stderr
        assert cli("devices").stdout.splitlines()[1].endswith("Pixel in the kitchen")

        revoked = cli("devices", "revoke", device_id)
        assert revoked.returncode == 0 and "logged out" in revoked.stdout
        assert get(info.url + "api/sessions", cookie).status == 401
        again = cli("devices", "revoke", device_id)
        assert again.returncode == 1 and "no device" in again.stderr
        assert "no devices" in cli("devices").stdout

        shown = cli("pair")
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        qr = [line for line in lines if "█" in line or "▀" in line or "▄" in line]
        assert len(qr) >= 12 and len({len(line) for line in qr}) == 1  # a square of half blocks
        assert any(line.startswith(f"{info.url}pair?code=") for line in lines)
        assert "\x1b" not in shown.stdout  # no colour escapes: it survives a pipe and the guard
        assert "works only on this machine" in shown.stdout  # no public_url: say what a phone needs
    finally:
        assert cli("stop").returncode == 0
    down = cli("devices")
    assert down.returncode == 3 and "not running" in down.stderr
    assert cli("pair").returncode == 3


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` and 127.0.0.1 and its key, as a user would make for their LAN."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_the_lan_recipe_allow_remote_with_your_own_certificate(paths: Paths, tmp_path: Path) -> None:
    """``--allow-remote`` on all addresses, HTTPS with the user's certificate, ``--public-url`` the
    LAN name: the QR code holds that https address, and the device cookie is Secure."""
    import ssl

    cert, key = self_signed(tmp_path, "box.lan")
    with socket.socket() as probe:  # a free port, known before start: public_url names it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    public = f"https://box.lan:{port}"
    start_daemon(
        "--host", "0.0.0.0", "--allow-remote", "--port", str(port),
        "--certfile", str(cert), "--keyfile", str(key), "--public-url", public,
    )  # fmt: skip
    try:
        doc = json.loads(cli("pair", "--json").stdout)
        assert doc["url"] == f"{public}/pair?code={doc['code']}"
        context = ssl.create_default_context(cafile=str(cert))  # the phone trusts the certificate

        def get_tls(
            path: str, headers: dict[str, str], method: str = "GET", body: str | None = None
        ) -> http.client.HTTPResponse:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
            conn.request(method, path, body=body, headers={"Host": f"box.lan:{port}", **headers})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            return resp

        context.check_hostname = False  # connecting by address; the name is checked below
        assert get_tls(f"/pair?code={doc['code']}", {"User-Agent": PHONE_UA}).status == 200
        form = {"User-Agent": PHONE_UA, "Content-Type": "application/x-www-form-urlencoded", "Origin": public}
        resp = get_tls("/pair", form, "POST", urllib.parse.urlencode({"code": doc["code"]}))
        assert resp.status == 303 and resp.getheader("Location") == "/"
        morsel = next(iter(SimpleCookie(resp.getheader("Set-Cookie")).values()))
        assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict"
        cookie = {"Cookie": f"{morsel.key}={morsel.value}"}
        listed = get_tls("/api/devices", cookie)
        assert listed.status == 200
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            strict = ssl.create_default_context(cafile=str(cert))
            with strict.wrap_socket(raw, server_hostname="box.lan") as tls:  # the name checks out
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert get_tls("/api/devices", {**cookie, "Host": f"evil.example:{port}"}).status == 403
    finally:
        assert cli("stop").returncode == 0
