"""CLI commands about devices: ``pair`` (a QR code to log a phone in), ``devices`` (list, revoke,
rename).

Like the other commands they only talk to the running daemon's API with the bearer token; the
pairing code is made by the daemon (it alone can redeem it). The QR code is drawn by segno, with
half-block characters (no colour escapes), so it passes :mod:`qwen_daemon.terminal`'s guard
unchanged and survives a pipe.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from qwen_daemon.cli.common import EXIT_FAIL, EXIT_OK, Refused, call_daemon, print_err
from qwen_daemon.config import Paths
from qwen_daemon.terminal import printable


def _ask(paths: Paths, method: str, path: str, expect: int, body: object | None = None) -> Any:
    """The running daemon's answer to one API call, or :class:`Refused` after printing why not."""
    status, payload = call_daemon(paths, method, path, body, timeout=30.0)
    if status != expect:
        print_err(f"the daemon answered {status}")
        raise Refused(EXIT_FAIL)
    return payload


def cmd_pair(args: argparse.Namespace, paths: Paths) -> int:
    """Print a QR code of a one-time pairing URL, the URL and when it expires."""
    try:
        payload = _ask(paths, "POST", "api/pairing", 201, {})
    except Refused as refused:
        return refused.code
    if args.json:
        print(json.dumps({key: payload.get(key) for key in ("url", "code", "expires_at")}))
        return EXIT_OK
    import segno

    url = str(payload.get("url"))
    segno.make(url, error="m").terminal(out=sys.stdout, compact=True, border=2)
    print(f"\n{url}\n")
    print(f"Scan the code (or open the address) on the new device before {payload.get('expires_at')};")
    print("it works once, and logs that browser in as a device (`qwen-daemon devices` lists them).")
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "::1", "localhost"):
        print(
            "Note: this address works only on this machine. For a phone, set public_url to the address "
            "it reaches the daemon at (a tunnel or reverse proxy, or the LAN address with --allow-remote)."
        )
    return EXIT_OK


def _devices_list(args: argparse.Namespace, paths: Paths) -> int:
    payload = _ask(paths, "GET", "api/devices", 200)
    devices = [d for d in payload.get("devices", []) if isinstance(d, dict)]
    if args.json:
        print(json.dumps(devices, indent=2))
        return EXIT_OK
    if not devices:
        print("no devices (log a browser in with `qwen-daemon url`, or a phone with `qwen-daemon pair`)")
        return EXIT_OK
    # escaped here (printing would escape them anyway) so the columns line up as printed
    columns = ("id", "last_seen_at", "created_at", "name")
    rows = [[printable(str(d.get(k, ""))) for k in columns] for d in devices]
    header = ["ID", "LAST SEEN", "ADDED", "NAME"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return EXIT_OK


def cmd_devices(args: argparse.Namespace, paths: Paths) -> int:
    """``devices`` lists; ``devices revoke ID`` logs one out; ``devices rename ID NAME``."""
    try:
        if args.action is None:
            return _devices_list(args, paths)
        if args.action == "revoke":
            _ask(paths, "DELETE", f"api/devices/{args.device}", 204)
            print(f"{args.device}  logged out")
            return EXIT_OK
        payload = _ask(paths, "PATCH", f"api/devices/{args.device}", 200, {"name": args.name})
    except Refused as refused:
        return refused.code
    print(f"{args.device}  name={payload.get('name')}")
    return EXIT_OK
