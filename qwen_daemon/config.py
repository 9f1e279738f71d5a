"""Settings and on-disk locations.

One typed, frozen :class:`Settings` object is built once at start from four layers, highest first:
command-line flag > ``QWEN_DAEMON_*`` environment variable > TOML file in the config dir > default.
Every value is parsed and range-checked here, so a bad value is one clear :class:`ConfigError`
naming the setting and its source instead of a failure deep inside the server.

Locations come from platformdirs, so a test run that points HOME and XDG_* at a temporary
directory never touches the real home. Settings and paths only: reading and writing the daemon's
private files is :mod:`qwen_daemon.private_files`, the token and the start-time check of every
path :mod:`qwen_daemon.daemon_files`.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from qwen_daemon.errors import ConfigError as ConfigError  # raised by the settings parser; re-exported

if TYPE_CHECKING:
    from qwen_daemon.push.channels import Channel

APP_NAME = "qwen-daemon"
ENV_PREFIX = "QWEN_DAEMON_"
#: The documented default port. ``0`` asks the OS for any free port.
DEFAULT_PORT = 7861


@dataclass(frozen=True)
class Paths:
    """Every file and directory the daemon owns. Directories are created 0700 on demand."""

    config_dir: Path
    state_dir: Path
    log_dir: Path
    runtime_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def token_file(self) -> Path:
        return self.config_dir / "token"

    @property
    def vapid_key_file(self) -> Path:
        """The Web Push (VAPID) private key, made at first start (``qwen_daemon.push.keys``)."""
        return self.config_dir / "vapid.pem"

    @property
    def discovery_file(self) -> Path:
        return self.runtime_dir / "daemon.json"

    @property
    def pid_file(self) -> Path:
        return self.runtime_dir / "daemon.pid"

    @property
    def start_flags_file(self) -> Path:
        """The flags of the last standalone ``start``, which ``restart`` gives again."""
        return self.runtime_dir / "start-flags.json"

    @property
    def database(self) -> Path:
        return self.state_dir / "sessions.db"

    @property
    def agent_groups_file(self) -> Path:
        return self.runtime_dir / "agent-groups"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "daemon.log"

    @property
    def agent_log_dir(self) -> Path:
        return self.log_dir / "agents"

    @classmethod
    def from_platform(cls) -> Paths:
        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to a private
            # directory of its own; the fallback is fine for us, the warning is noise.
            warnings.simplefilter("ignore")
            runtime = dirs.user_runtime_dir
        return cls(
            config_dir=Path(dirs.user_config_dir),
            state_dir=Path(dirs.user_state_dir),
            log_dir=Path(dirs.user_log_dir),
            runtime_dir=Path(runtime),
        )


# --- settings ---------------------------------------------------------------------------------


def _parse_host(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a host name or IP address")
    host = value.strip()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(part and len(part) <= 63 for part in host.split(".")) or " " in host:
            raise ValueError(f"{host!r} is not a host name or IP address") from None
    return host


def _parse_int(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        if isinstance(value, str):
            try:
                value = int(value.strip(), 10)
            except ValueError:
                raise ValueError(f"{value!r} is not a whole number") from None
        if not isinstance(value, int):
            raise ValueError("must be a whole number")
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range ({low}..{high})")
        return value

    return parse


def _parse_seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number of seconds") from None
    if not isinstance(value, int | float) or value != value or value <= 0 or value > 365 * 86400:
        raise ValueError("must be a positive number of seconds")
    return float(value)


def _parse_command(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into words: {exc}") from None
    elif isinstance(value, list | tuple) and all(isinstance(p, str) for p in value):
        parts = list(value)
    else:
        raise ValueError("must be a command line (a string or a list of strings)")
    if not parts or not parts[0]:
        raise ValueError("must not be empty")
    return tuple(parts)


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    words = ("1", "true", "yes", "on", "0", "false", "no", "off")
    if isinstance(value, str) and value.strip().lower() in words:
        return value.strip().lower() in words[:4]
    raise ValueError("must be true or false")


def _parse_public_url(value: object) -> str | None:
    """``https://phone.example.ts.net`` (a tunnel or proxy in front): scheme, host and an optional
    port; kept without its trailing slash. No path prefix: the pages and their links live at the
    site's root, so a proxy must give the daemon a whole (sub)domain or port."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("must be an http(s) URL")
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("must be an http(s) URL such as https://host.example (no query or fragment)")
    if parts.path not in ("", "/"):
        raise ValueError("must be the site's root (https://host.example[:port]), without a path")
    if parts.username or parts.password:
        raise ValueError("must not carry a user name or password")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("has a malformed port") from None
    return value.strip().rstrip("/")


def _parse_file(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a file path")
    if not os.path.isfile(value):
        raise ValueError(f"{value!r} is not a readable file")
    return os.path.abspath(value)


def _parse_hosts(value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a list of host names")
    return tuple(_parse_host(item).lower() for item in items if not isinstance(item, str) or item.strip())


def _parse_log_level(value: object) -> str:
    levels = ("debug", "info", "warning", "error")
    if not isinstance(value, str) or value.lower() not in levels:
        raise ValueError(f"must be one of {', '.join(levels)}")
    return value.lower()


@dataclass(frozen=True)
class _Spec:
    parse: Callable[[object], Any]
    help: str


_SPECS: dict[str, _Spec] = {
    "host": _Spec(_parse_host, "address to listen on (loopback by default)"),
    "port": _Spec(_parse_int(0, 65535), f"port to listen on (default {DEFAULT_PORT}; 0 = any free port)"),
    "agent_cmd": _Spec(_parse_command, "command line of the ACP agent (default: the pinned Qwen Code)"),
    "max_sessions": _Spec(
        _parse_int(1, 10_000),
        "most unarchived sessions (failed ones aside): creating one beyond it is refused",
    ),
    "agent_idle_timeout": _Spec(_parse_seconds, "seconds an agent with nothing to do keeps running"),
    "start_timeout": _Spec(_parse_seconds, "seconds `start` waits for the daemon to answer"),
    "retention_days": _Spec(_parse_seconds, "days closed sessions are kept before --prune removes them"),
    "event_history": _Spec(_parse_int(100, 10_000_000), "events kept per session"),
    "log_level": _Spec(_parse_log_level, "debug, info, warning or error"),
    "log_max_bytes": _Spec(_parse_int(4096, 2**40), "bytes at which the standalone log file rotates"),
    "log_backups": _Spec(_parse_int(1, 100), "rotated log files kept beside it (daemon.log.1, ...)"),
    "allow_remote": _Spec(_parse_bool, "allow listening on a non-loopback address"),
    "certfile": _Spec(_parse_file, "TLS certificate (PEM) to serve HTTPS"),
    "keyfile": _Spec(_parse_file, "TLS private key (PEM) for --certfile"),
    "insecure_remote": _Spec(
        _parse_bool, "allow remote access without TLS (the token then crosses the network)"
    ),
    "allowed_hosts": _Spec(_parse_hosts, "extra Host names to answer to (e.g. a tunnel's name)"),
    "public_url": _Spec(_parse_public_url, "https address a phone reaches the daemon at (tunnel or proxy)"),
    "push_preview": _Spec(_parse_bool, "tool names and text in push notifications (false: only the kind)"),
    "push_insecure_endpoints": _Spec(_parse_bool, "accept http:// push endpoints on loopback (for tests)"),
    "default_agent": _Spec(lambda v: _parse_agent_name(v), "the named agent new sessions use unless told"),
    "spare_agents": _Spec(
        _parse_int(0, 100), "recently used workspaces that keep a warm spare agent (0 = off)"
    ),
}

#: Settings that no longer do anything: accepted from every layer, whatever their value, and
#: named in one warning each (refusing to start over a line in an old config file would be worse)
RETIRED: dict[str, str] = {
    "idle_timeout": "idle_timeout no longer does anything: sessions stay until you delete or archive them",
}

#: The built-in agent: Qwen Code (``agent_cmd`` overrides how it is started).
BUILTIN_AGENT = "qwen"


@dataclass(frozen=True)
class AgentSpec:
    """One named agent from the ``[agents.<name>]`` table: its command line and extra environment.

    ``command`` is None only for the built-in ``qwen`` agent when no ``agent_cmd`` is set: it is
    then found the usual way (the pinned Qwen Code, then ``qwen`` on PATH).
    """

    name: str
    command: tuple[str, ...] | None
    env: Mapping[str, str] = field(default_factory=dict)


def _parse_agent_name(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ValueError("must be an agent name (1 to 64 characters)")
    if not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError(f"{value!r} may only contain letters, digits, '-', '_' and '.'")
    return value


def _parse_agents(table: object, source: str) -> dict[str, AgentSpec]:
    """``[agents.<name>]`` tables: ``command`` (string or list) and optional ``env`` (strings)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: 'agents' must be a table of [agents.<name>] tables")
    agents = {}
    for name, spec in table.items():
        label = f"{source}: agents.{name}"
        try:
            _parse_agent_name(name)
        except ValueError as exc:
            raise ConfigError(f"{label}: the name {exc}") from None
        if not isinstance(spec, dict):
            raise ConfigError(f"{label} must be a table with a 'command'")
        unknown = sorted(set(spec) - {"command", "env"})
        if unknown:
            raise ConfigError(f"{label}: unknown key(s) {', '.join(unknown)}")
        try:
            command = _parse_command(spec.get("command"))
        except ValueError as exc:
            raise ConfigError(f"{label}.command {exc}") from None
        if command is None:
            raise ConfigError(f"{label} needs a 'command'")
        env = spec.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ConfigError(f"{label}.env must be a table of strings")
        agents[name] = AgentSpec(name, command, dict(env))
    return agents


@dataclass(frozen=True)
class Settings:
    """Everything the daemon is configured with, validated."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    agent_cmd: tuple[str, ...] | None = None
    max_sessions: int = 50
    agent_idle_timeout: float = 10 * 60.0
    start_timeout: float = 30.0
    retention_days: float = 30.0
    event_history: int = 10_000
    log_level: str = "info"
    #: the standalone log file rotates at this size, keeping ``log_backups`` old ones (the journal
    #: has its own limits): the log can never take more than about size * (backups + 1)
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 3
    allow_remote: bool = False
    certfile: str | None = None
    keyfile: str | None = None
    insecure_remote: bool = False
    allowed_hosts: tuple[str, ...] = ()
    #: the address a phone uses (a tunnel or reverse proxy in front of the daemon): pairing QR codes
    #: and absolute links use it, its host is allowed, its origin is ours
    public_url: str | None = None
    #: push and notify bodies name the tool and quote the text (off: only "needs your approval")
    push_preview: bool = True
    #: allow ``http://`` push endpoints on loopback (tests only; real push services are https)
    push_insecure_endpoints: bool = False
    default_agent: str = BUILTIN_AGENT
    spare_agents: int = 1
    #: ``[[notify]]`` entries: webhooks and ntfy topics told what Web Push tells (push/channels.py)
    notify: tuple[Channel, ...] = ()
    #: every named agent, the built-in ``qwen`` included (see :func:`load_settings`)
    agents: Mapping[str, AgentSpec] = field(default_factory=dict)
    paths: Paths = field(default_factory=Paths.from_platform)
    #: warnings about what was given but ignored (see RETIRED), for the log and `start` to show once
    notices: tuple[str, ...] = ()

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def loopback_only(self) -> bool:
        if self.host.lower() in ("localhost", "localhost.localdomain"):
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    def agent_spec(self, name: str | None = None) -> AgentSpec:
        """The named agent (default: ``default_agent``); KeyError if there is none by that name."""
        name = name or self.default_agent
        if name in self.agents:
            return self.agents[name]
        if name == BUILTIN_AGENT:
            return AgentSpec(BUILTIN_AGENT, self.agent_cmd)
        raise KeyError(name)

    def agent_names(self) -> list[str]:
        return sorted({BUILTIN_AGENT, *self.agents})


def setting_names() -> list[str]:
    return list(_SPECS)


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _read_config_file(path: Path) -> dict[str, object]:
    """The TOML file's table; {} when there is none. Read through ``read_private``: a link, another
    user's file or one others can write is refused (its ``agent_cmd`` is a command we would run).
    ``start`` checks the config directory itself first (``secure_paths``)."""
    from qwen_daemon.private_files import read_private  # on first use: most commands need no file

    try:
        raw = read_private(path, "config")
    except FileNotFoundError:  # the common case; spares every command the TOML parser's import
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    import tomllib

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    unknown = sorted(set(data) - set(_SPECS) - set(RETIRED) - {"agents", "notify"})
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def load_settings(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    paths: Paths | None = None,
) -> Settings:
    """Build :class:`Settings` from flags > environment > config file > defaults.

    ``flags`` holds only the options the user actually gave (``None`` values are ignored).
    """
    env = os.environ if env is None else env
    paths = paths or Paths.from_platform()
    file_source = f"config file {paths.config_file}"
    file_values = _read_config_file(paths.config_file)
    layers: list[tuple[str, Mapping[str, object]]] = [
        ("command line", {k: v for k, v in (flags or {}).items() if v is not None}),
        ("environment", {n: env[env_name(n)] for n in [*_SPECS, *RETIRED] if env_name(n) in env}),
        (file_source, file_values),
    ]
    values: dict[str, Any] = {}
    for name, spec in _SPECS.items():
        for source, layer in layers:
            if name in layer:
                label = f"--{name.replace('_', '-')}" if source == "command line" else name
                if source == "environment":
                    label = env_name(name)
                try:
                    values[name] = spec.parse(layer[name])
                except ValueError as exc:
                    raise ConfigError(f"invalid {label} (from {source}): {exc}") from None
                break
    agents = _parse_agents(file_values.get("agents", {}), file_source)
    from qwen_daemon.push.channels import parse_channels  # stdlib only

    values["notify"] = parse_channels(file_values.get("notify", []), file_source)
    if BUILTIN_AGENT in agents and values.get("agent_cmd") is None:
        values["agent_cmd"] = agents[BUILTIN_AGENT].command
    notices = tuple(text for name, text in RETIRED.items() if any(name in layer for _s, layer in layers))
    settings = Settings(paths=paths, agents=agents, notices=notices, **values)
    try:
        settings.agent_spec()
    except KeyError:
        raise ConfigError(
            f"default_agent {settings.default_agent!r} is not a configured agent "
            f"(known: {', '.join(settings.agent_names())})"
        ) from None
    _check_exposure(settings)
    return settings


def _check_exposure(settings: Settings) -> None:
    """Remote access is opt-in, and without TLS it needs a second, explicit opt-in."""
    if (settings.certfile is None) != (settings.keyfile is None):
        raise ConfigError("--certfile and --keyfile go together: give both or neither")
    if settings.loopback_only:
        return
    if not settings.allow_remote:
        raise ConfigError(
            f"host {settings.host} is reachable from other machines; pass --allow-remote "
            "(QWEN_DAEMON_ALLOW_REMOTE=true) if that is what you want"
        )
    if not settings.tls and not settings.insecure_remote:
        raise ConfigError(
            "remote access without TLS would send the token in clear text; give --certfile and "
            "--keyfile, or pass --insecure-remote to accept that risk"
        )
