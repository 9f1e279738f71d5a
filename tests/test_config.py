"""Settings precedence and validation, token handling, private directories."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from qwen_daemon.config import (
    DEFAULT_PORT,
    ConfigError,
    Paths,
    Settings,
    load_settings,
)
from qwen_daemon.daemon_files import load_or_create_token
from qwen_daemon.private_files import UnsafePath, ensure_private_dir, write_private_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_config(paths: Paths, text: str) -> None:
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(text, encoding="utf-8")


def test_paths_live_under_the_isolated_home(paths: Paths, isolated_home: Path) -> None:
    for p in (paths.config_dir, paths.state_dir, paths.log_dir, paths.runtime_dir):
        assert p.is_relative_to(isolated_home.parent)


def test_defaults(paths: Paths) -> None:
    s = load_settings(env={}, paths=paths)
    assert s == Settings(paths=paths)
    assert s.host == "127.0.0.1"
    assert s.port == DEFAULT_PORT
    assert s.agent_cmd is None
    assert s.log_level == "info"


def test_precedence_flag_over_env_over_file_over_default(paths: Paths) -> None:
    _write_config(paths, 'port = 1111\nmax_sessions = 7\nlog_level = "debug"\nagent_idle_timeout = 60\n')
    env = {"QWEN_DAEMON_PORT": "2222", "QWEN_DAEMON_MAX_SESSIONS": "8"}
    s = load_settings(flags={"port": "3333", "max_sessions": None}, env=env, paths=paths)
    assert s.port == 3333  # flag wins
    assert s.max_sessions == 8  # env beats file (the None flag is "not given")
    assert s.log_level == "debug"  # file beats default
    assert s.agent_idle_timeout == 60.0
    assert s.event_history == Settings(paths=paths).event_history  # default


def test_env_is_read_from_the_process_by_default(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWEN_DAEMON_HOST", "::1")
    assert load_settings(paths=paths).host == "::1"


def test_agent_cmd_is_split_like_a_shell(paths: Paths) -> None:
    s = load_settings(flags={"agent_cmd": "node 'my agent.js' --acp"}, env={}, paths=paths)
    assert s.agent_cmd == ("node", "my agent.js", "--acp")
    _write_config(paths, 'agent_cmd = ["qwen", "--acp"]\n')
    assert load_settings(env={}, paths=paths).agent_cmd == ("qwen", "--acp")


@pytest.mark.parametrize(
    ("layer", "name", "value", "expected_label"),
    [
        ("flag", "port", "70000", "--port"),
        ("flag", "port", "http", "--port"),
        ("flag", "max_sessions", "0", "--max-sessions"),
        ("flag", "agent_idle_timeout", "-5", "--agent-idle-timeout"),
        ("flag", "log_level", "loud", "--log-level"),
        ("flag", "host", "not a host", "--host"),
        ("flag", "agent_cmd", "'unclosed", "--agent-cmd"),
        ("env", "port", "-1", "QWEN_DAEMON_PORT"),
        ("env", "agent_idle_timeout", "soon", "QWEN_DAEMON_AGENT_IDLE_TIMEOUT"),
        ("file", "port", '"eighty"', "port"),
        ("file", "max_sessions", "true", "max_sessions"),
    ],
)
def test_bad_values_name_the_setting_and_source(
    paths: Paths, layer: str, name: str, value: str, expected_label: str
) -> None:
    flags: dict[str, object] = {}
    env: dict[str, str] = {}
    if layer == "flag":
        flags[name] = value
    elif layer == "env":
        env["QWEN_DAEMON_" + name.upper()] = value
    else:
        _write_config(paths, f"{name} = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(flags=flags, env=env, paths=paths)
    message = str(info.value)
    assert expected_label in message
    source = {"flag": "command line", "env": "environment", "file": "config file"}[layer]
    assert source in message


IDLE_NOTICE = "idle_timeout no longer does anything: sessions stay until you delete or archive them"


@pytest.mark.parametrize("layer", ["flag", "env", "file", "all"])
def test_idle_timeout_is_accepted_ignored_and_named_once(paths: Paths, layer: str) -> None:
    """Sessions no longer close on a timer; an old config, environment or start script that still
    sets idle_timeout (any value, even one that was never valid) must not stop the daemon."""
    flags: dict[str, object] = {"idle_timeout": "15"} if layer in ("flag", "all") else {}
    env = {"QWEN_DAEMON_IDLE_TIMEOUT": "-1"} if layer in ("env", "all") else {}
    if layer in ("file", "all"):
        _write_config(paths, 'idle_timeout = "soon"\n')
    settings = load_settings(flags=flags, env=env, paths=paths)
    assert settings.notices == (IDLE_NOTICE,)
    assert not hasattr(settings, "idle_timeout")
    paths.config_file.unlink(missing_ok=True)
    assert load_settings(env={}, paths=paths).notices == ()  # nothing given, nothing said


def test_unknown_and_unparseable_config_files_are_errors(paths: Paths) -> None:
    _write_config(paths, "prot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown setting.*prot"):
        load_settings(env={}, paths=paths)
    _write_config(paths, "port = = 1\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(env={}, paths=paths)


def test_a_config_file_that_cannot_be_opened_is_an_error_not_ignored(paths: Paths) -> None:
    """Only a missing file means defaults; anything else (here: the config dir is a file) is named."""
    paths.config_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.config_dir.write_text("not a directory", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(env={}, paths=paths)


def test_token_is_private_long_and_stable(paths: Paths) -> None:
    token = load_or_create_token(paths)
    assert len(token) >= 32
    assert _mode(paths.token_file) == 0o600
    assert _mode(paths.config_dir) == 0o700
    assert load_or_create_token(paths) == token
    assert load_or_create_token(Paths.from_platform()) == token


def test_a_token_others_can_read_is_refused_and_short_tokens_replaced(paths: Paths) -> None:
    """Issue 14 (finding 4): a token others could read may have leaked, so it is refused (naming
    the file and the way out), no longer quietly made private again and kept."""
    token = load_or_create_token(paths)
    paths.token_file.chmod(0o644)
    with pytest.raises(UnsafePath, match=r"token can be read by other users \(mode 0644\).*token rotate"):
        load_or_create_token(paths)
    assert _mode(paths.token_file) == 0o644 and paths.token_file.read_text().strip() == token
    paths.token_file.chmod(0o600)
    assert load_or_create_token(paths) == token
    paths.token_file.write_text("short\n", encoding="utf-8")
    replaced = load_or_create_token(paths)
    assert replaced != "short"
    assert len(replaced) >= 32


def test_a_garbage_token_file_is_replaced(paths: Paths) -> None:
    paths.config_dir.mkdir(parents=True)
    paths.token_file.write_bytes(bytes(range(256)))
    paths.token_file.chmod(0o600)  # private, or it would be refused before it is read
    token = load_or_create_token(paths)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert paths.token_file.read_text().strip() == token


def test_first_starts_racing_all_get_the_token_that_was_kept(tmp_path: Path) -> None:
    """Several first-time ``start`` at once each made a token and the last write won: a printed
    URL could carry a token the daemon rejects. Threads stand in for the processes (all that
    matters here is who creates the file first)."""
    import threading

    for attempt in range(10):
        paths = Paths(tmp_path / f"c{attempt}", tmp_path / "s", tmp_path / "l", tmp_path / "r")
        barrier = threading.Barrier(8)
        got: list[str] = []

        def first_start(
            paths: Paths = paths, barrier: threading.Barrier = barrier, got: list[str] = got
        ) -> None:
            barrier.wait()
            got.append(load_or_create_token(paths))

        threads = [threading.Thread(target=first_start) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(got) == {paths.token_file.read_text().strip()}


def test_private_dirs_and_files(tmp_path: Path) -> None:
    d = ensure_private_dir(tmp_path / "a" / "b")
    assert _mode(d) == 0o700
    d.chmod(0o755)
    ensure_private_dir(d)
    assert _mode(d) == 0o700
    f = d / "x.json"
    write_private_file(f, "one")
    write_private_file(f, "two")
    assert f.read_text(encoding="utf-8") == "two"
    assert _mode(f) == 0o600
    assert [p.name for p in d.iterdir()] == ["x.json"]  # no temp files left behind


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://box.tail1234.ts.net/", "https://box.tail1234.ts.net"),
        ("http://phone.test:8443", "http://phone.test:8443"),
    ],
)
def test_public_url_is_kept_as_a_root_address(paths: Paths, given: str, kept: str) -> None:
    assert load_settings(flags={"public_url": given}, env={}, paths=paths).public_url == kept


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("box.example", "http"),
        ("ftp://box.example", "http"),
        ("https://box.example/qwen", "root"),
        ("https://box.example/?x=1", "query"),
        ("https://user:pw@box.example", "password"),
        ("https://box.example:99999", "port"),
    ],
)
def test_public_url_refuses_what_the_pages_could_not_live_at(paths: Paths, given: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_settings(flags={"public_url": given}, env={}, paths=paths)
