"""The shipped unit, socket and plist, and rendering them for a user installation.

Lint is strict: ``systemd-analyze verify`` exits 0 on unknown keys and typos, so any output at
all fails; the plist must pass ``xmllint --valid`` against Apple's DTD and a key/type check.
"""

from __future__ import annotations

import configparser
import os
import plistlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qwen_daemon.runtime import SHUTDOWN_TIMEOUT
from qwen_daemon.service import templates
from qwen_daemon.service.base import daemon_argv, service_path
from qwen_daemon.service.launchd import Launchd
from tests.support.probe import cli
from tests.support.system import REPO_ROOT, SHARED, need, need_tool

VENV_EXE = str(Path(sys.executable).parent / "qwen-daemon")
#: Worst acceptable `systemd-analyze security` exposure (measured 7.7; lower is better).
MAX_EXPOSURE = 7.7


def _analyze(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    need_tool("systemd-analyze")
    runtime = tmp_path / "analyze-run"
    runtime.mkdir(exist_ok=True, mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.run(
        ["systemd-analyze", "--user", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _verify(tmp_path: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    res = _analyze(tmp_path, "verify", "--man=no", *files)
    return res.stdout + res.stderr


def _unit_options(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_repository_files_are_the_shipped_templates() -> None:
    for repo_path, name in (
        ("systemd/qwen-daemon.service", templates.UNIT_TEMPLATE),
        ("systemd/qwen-daemon.socket", templates.SOCKET_TEMPLATE),
        (f"launchd/{templates.PLIST_TEMPLATE}", templates.PLIST_TEMPLATE),
    ):
        assert (REPO_ROOT / repo_path).read_text(encoding="utf-8") == templates.load(name), repo_path


def test_unit_carries_the_supervision_contract() -> None:
    unit = _unit_options(templates.load(templates.UNIT_TEMPLATE))
    service = unit["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["ExecStart"] == "/usr/bin/qwen-daemon start --foreground"
    assert service["Restart"] == "on-failure" and service["KillMode"] == "mixed"
    assert int(service["WatchdogSec"]) >= 10 and int(service["RestartSec"]) >= 1
    # systemd must not SIGKILL a daemon that is still stopping its agents
    assert int(service["TimeoutStopSec"]) > SHUTDOWN_TIMEOUT
    assert service["Environment"].startswith("PATH=/")
    assert "MemoryDenyWriteExecute" not in service  # Node's JIT needs W+X memory
    assert service["NoNewPrivileges"] == "yes"
    assert unit["Install"]["WantedBy"] == "default.target"


def test_rendered_units_verify_cleanly(tmp_path: Path) -> None:
    unit = templates.render_unit(daemon_argv(), service_path())
    assert f"ExecStart={VENV_EXE} start --foreground" in unit
    socket_unit = templates.render_socket("127.0.0.1", 7861)
    assert "ListenStream=127.0.0.1:7861" in socket_unit
    assert _verify(tmp_path, {"qwen-daemon.service": unit, "qwen-daemon.socket": socket_unit}) == ""


def test_hardening_score_does_not_regress(tmp_path: Path) -> None:
    (tmp_path / "qwen-daemon.service").write_text(
        templates.render_unit((VENV_EXE,), "/usr/bin"), encoding="utf-8"
    )
    res = _analyze(tmp_path, "security", "--offline=yes", "--no-pager", "qwen-daemon.service")
    match = re.search(r"Overall exposure level for qwen-daemon\.service: (\d+\.\d)", res.stdout)
    assert match, res.stdout + res.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_awkward_paths_are_escaped_so_systemd_reads_them_back(tmp_path: Path) -> None:
    odd = tmp_path / "my tools 100% $HOME"
    odd.mkdir()
    exe = odd / "qwen-daemon"
    exe.write_text("#!/bin/sh\n", encoding="utf-8")
    exe.chmod(0o755)
    argv = (str(exe), "start", "--foreground", 'a "quoted" $arg')
    unit = templates.render_unit(argv, f'{odd}:/opt/"x":/usr/bin')
    # verify checks that ExecStart's program exists: a wrongly escaped path would not.
    assert _verify(tmp_path, {"qwen-daemon.service": unit}) == ""
    assert '100%% $HOME/qwen-daemon" start --foreground "a \\"quoted\\" $$arg"' in unit
    assert 'Environment="PATH=' in unit and '100%% $HOME:/opt/\\"x\\":/usr/bin' in unit


def test_rendering_refuses_what_it_cannot_express() -> None:
    with pytest.raises(templates.TemplateError, match="absolute"):
        templates.render_unit(("qwen-daemon",), "/usr/bin")
    with pytest.raises(templates.TemplateError, match="quotes or backslashes"):
        templates.render_unit(('/opt/"odd"/qwen-daemon',), "/usr/bin")
    with pytest.raises(templates.TemplateError, match="control characters"):
        templates.render_unit(("/usr/bin/qwen-daemon",), "/usr/bin\nExecStartPre=/bin/evil")
    with pytest.raises(templates.TemplateError, match="exactly one 'ExecStart=' line"):
        templates.render_unit(("/usr/bin/qwen-daemon",), "/usr/bin", template="[Service]\n")
    with pytest.raises(templates.TemplateError, match="host name"):
        templates.render_socket("localhost", 7861)
    with pytest.raises(templates.TemplateError, match="fixed port"):
        templates.render_socket("127.0.0.1", 0)
    assert templates.listen_address("::1", 7861) == "[::1]:7861"


def test_service_path_keeps_only_absolute_unique_entries() -> None:
    env = {"PATH": "/opt/node/bin::.:bin:/usr/bin:/opt/node/bin"}
    assert service_path(env) == "/opt/node/bin:/usr/bin"
    assert service_path({"PATH": "relative"}) == "/usr/local/bin:/usr/bin:/bin"


def _check_plist_keys(doc: dict[str, object], home: Path) -> None:
    """The LaunchAgent keys the issue asks for, with their types."""
    args = doc["ProgramArguments"]
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    assert args[0].startswith("/") and args[1:] == ["start", "--foreground"]
    assert doc["Label"] == "io.github.qwen-daemon"
    assert doc["RunAtLoad"] is True
    assert doc["KeepAlive"] == {"SuccessfulExit": False}
    assert doc["ProcessType"] == "Interactive"  # Background would be throttled
    assert isinstance(doc["ThrottleInterval"], int) and not isinstance(doc["ThrottleInterval"], bool)
    env = doc["EnvironmentVariables"]
    assert isinstance(env, dict) and isinstance(env["PATH"], str)
    for key in ("StandardOutPath", "StandardErrorPath"):
        value = doc[key]
        assert isinstance(value, str)
        assert Path(value).parent == home / "Library" / "Logs" / "qwen-daemon"


def test_rendered_plist_is_valid_and_has_the_right_keys(tmp_path: Path, isolated_home: Path) -> None:
    need_tool("xmllint")
    catalog = SHARED / "tools" / "plist" / "catalog.xml"
    need(catalog.is_file(), f"{catalog} not found (shared/ sits beside the repository)")
    launchd = Launchd()
    text = templates.render_plist(
        "io.github.qwen-daemon", daemon_argv(), "/opt/homebrew/bin:/usr/bin", launchd.log_file
    )
    rendered = tmp_path / "io.github.qwen-daemon.plist"
    rendered.write_text(text, encoding="utf-8")
    for path in (rendered, REPO_ROOT / "launchd" / templates.PLIST_TEMPLATE):
        res = subprocess.run(
            ["xmllint", "--nonet", "--noout", "--valid", str(path)],
            env={**os.environ, "XML_CATALOG_FILES": str(catalog)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode == 0 and res.stderr == "", res.stderr
    doc = plistlib.loads(rendered.read_bytes())
    _check_plist_keys(doc, isolated_home)
    assert doc["ProgramArguments"][0] == VENV_EXE
    assert doc["EnvironmentVariables"]["PATH"] == "/opt/homebrew/bin:/usr/bin"


def test_install_dry_run_prints_and_changes_nothing(isolated_home: Path) -> None:
    for manager, marker in (("systemd", f"ExecStart={VENV_EXE} start --foreground"), ("launchd", VENV_EXE)):
        res = cli("service", "install", "--dry-run", "--manager", manager)
        assert res.returncode == 0, res.stderr
        assert marker in res.stdout and "# would write" in res.stdout
    assert not any(p.is_file() for p in isolated_home.rglob("*")), "dry run wrote files"
