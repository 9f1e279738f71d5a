"""The shipped unit and plist templates, and how one is rendered for this user.

The templates (``templates/`` beside this module, package data; ``systemd/`` and ``launchd/`` at
the top of the repository point at them) are complete, valid files for a system-wide
installation: ``ExecStart=/usr/bin/qwen-daemon``, a distribution PATH. That is what the Debian
package installs unchanged. Rendering for a user installation replaces exactly those values, by
key rather than by text substitution, so a template edit cannot silently stop them being
replaced (a missing or duplicated key is an error) and no value can inject a new line.
"""

from __future__ import annotations

import ipaddress
import plistlib
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

UNIT_TEMPLATE = "qwen-daemon.service"
SOCKET_TEMPLATE = "qwen-daemon.socket"
PLIST_TEMPLATE = "io.github.qwen-daemon.plist"


class TemplateError(Exception):
    """A template cannot be rendered (it lost a key, or a value cannot be expressed)."""


def load(name: str) -> str:
    """The text of a shipped template."""
    return (resources.files(__package__) / "templates" / name).read_text(encoding="utf-8")


# --- systemd --------------------------------------------------------------------------------------


def _check_value(value: str) -> None:
    if not value.isprintable():
        raise TemplateError(f"{value!r} contains control characters")


def systemd_quote(word: str, *, exec_arg: bool = False) -> str:
    """One word for a unit file, escaped so systemd reads back exactly ``word``.

    ``%`` starts a specifier everywhere; in ``ExecStart=`` arguments ``$`` expands variables too.
    Words with blanks, quotes or backslashes are double-quoted with C-style escapes.
    """
    _check_value(word)
    out = word.replace("%", "%%")
    if exec_arg:
        out = out.replace("$", "$$")
    if out and not re.search(r"[\s\"'\\;]", out):
        return out
    return '"' + out.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _replace_line(text: str, prefix: str, new_line: str) -> str:
    pattern = re.compile(rf"^{re.escape(prefix)}.*$", re.MULTILINE)
    found = pattern.findall(text)
    if len(found) != 1:
        raise TemplateError(f"template must contain exactly one {prefix!r} line, found {len(found)}")
    return pattern.sub(lambda _m: new_line, text)


def render_unit(argv: Sequence[str], path: str, template: str | None = None) -> str:
    """The service unit with ``ExecStart=`` running ``argv`` and ``PATH`` set to ``path``."""
    if not argv or not argv[0].startswith("/"):
        raise TemplateError(f"ExecStart needs an absolute program path, got {argv[:1]!r}")
    if re.search(r'["\\]', argv[0]):
        # systemd refuses such program paths outright ("Executable name contains special characters").
        raise TemplateError(
            f"systemd cannot run a program whose path contains quotes or backslashes: {argv[0]}"
        )
    text = load(UNIT_TEMPLATE) if template is None else template
    # The program path takes no $-expansion (a literal $ stays $); its arguments do.
    exec_start = " ".join([systemd_quote(argv[0]), *(systemd_quote(a, exec_arg=True) for a in argv[1:])])
    text = _replace_line(text, "ExecStart=", f"ExecStart={exec_start}")
    return _replace_line(text, "Environment=PATH=", "Environment=" + systemd_quote(f"PATH={path}"))


def listen_address(host: str, port: int) -> str:
    """``host:port`` as ``ListenStream=`` takes it; the socket unit needs a literal address."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise TemplateError(
            f"socket activation needs an IP address to listen on, not the host name {host!r} "
            "(set host in config.toml)"
        ) from None
    if not 0 < port <= 65535:
        raise TemplateError(f"socket activation needs a fixed port, not {port} (set port in config.toml)")
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def render_socket(host: str, port: int, template: str | None = None) -> str:
    """The socket unit listening where the daemon would (``host``/``port`` from the settings)."""
    text = load(SOCKET_TEMPLATE) if template is None else template
    return _replace_line(text, "ListenStream=", f"ListenStream={listen_address(host, port)}")


# --- launchd --------------------------------------------------------------------------------------


def render_plist(
    label: str, argv: Sequence[str], path: str, log_file: Path, template: str | None = None
) -> str:
    """The LaunchAgent for ``argv``, with PATH and both output streams set.

    launchd expands neither ``~`` nor variables, so every path written here is absolute.
    """
    if not argv or not argv[0].startswith("/"):
        raise TemplateError(f"ProgramArguments needs an absolute program path, got {argv[:1]!r}")
    for value in (label, *argv, path, str(log_file)):
        _check_value(value)
    raw = load(PLIST_TEMPLATE) if template is None else template
    doc: dict[str, Any] = plistlib.loads(raw.encode("utf-8"))
    for key in ("Label", "ProgramArguments", "EnvironmentVariables", "StandardOutPath", "StandardErrorPath"):
        if key not in doc:
            raise TemplateError(f"plist template lost its {key} key")
    doc["Label"] = label
    doc["ProgramArguments"] = list(argv)
    doc["EnvironmentVariables"] = {**doc["EnvironmentVariables"], "PATH": path}
    doc["StandardOutPath"] = str(log_file)
    doc["StandardErrorPath"] = str(log_file)
    return plistlib.dumps(doc, fmt=plistlib.FMT_XML, sort_keys=False).decode("utf-8")
