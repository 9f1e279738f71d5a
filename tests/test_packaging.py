"""What distributions get: a wheel and sdist that carry the web assets and the templates, and a
Debian package that puts the user unit in /usr/lib/systemd/user.

Both build from a copy of the source tree (as a clean checkout would) and install for real: the
wheel into a fresh virtualenv that must serve from its own site-packages, the .deb with dpkg
(root only; purged afterwards) and then run by a private systemd user manager.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest

from qwen_daemon import __version__
from qwen_daemon.service import templates
from tests.support.probe import get_json
from tests.support.system import REPO_ROOT, need, need_root, need_tool
from tests.support.usermanager import SERVICE, need_user_manager, user_manager

pytestmark = pytest.mark.timeout(600)

_BUILD_PRODUCTS = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
)


def _clean_env() -> dict[str, str]:
    """The test's environment without the source checkout on PYTHONPATH (conftest puts it there)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def _run(argv: list[str | Path], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=_clean_env(), cwd=cwd
    )
    assert res.returncode == 0, f"{argv}: {res.stdout[-3000:]}{res.stderr[-3000:]}"
    return res


def _package_data() -> list[str]:
    """Files the wheel must carry: the templates, py.typed and everything under qwen_daemon/web/."""
    package = REPO_ROOT / "qwen_daemon"
    names = [
        f"qwen_daemon/service/templates/{t}" for t in sorted(os.listdir(package / "service" / "templates"))
    ]
    names.append("qwen_daemon/py.typed")
    web = package / "web"
    if web.is_dir():
        names += sorted(p.relative_to(REPO_ROOT).as_posix() for p in web.rglob("*") if p.is_file())
    return names


def test_wheel_from_the_sdist_installs_and_serves(tmp_path: Path, isolated_home: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(*_BUILD_PRODUCTS))
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "build", "--outdir", dist, src], timeout=300
    )  # the wheel is built from the sdist
    (wheel,) = dist.glob("qwen_daemon-*.whl")
    (sdist,) = dist.glob("qwen_daemon-*.tar.gz")
    expected = _package_data()
    with zipfile.ZipFile(wheel) as zf:
        missing = sorted(set(expected) - set(zf.namelist()))
    assert missing == [], f"not in the wheel: {missing}"
    with tarfile.open(sdist) as tf:
        in_sdist = {n.partition("/")[2] for n in tf.getnames()}
    assert sorted(set(expected) - in_sdist) == []

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], timeout=120)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel], timeout=300)
    exe = venv / "bin" / "qwen-daemon"
    assert _run([exe, "--version"], timeout=60).stdout.strip() == f"qwen-daemon {__version__}"
    where = _run(
        [venv / "bin" / "python", "-c", "import qwen_daemon; print(qwen_daemon.__file__)"], 60, cwd=tmp_path
    )
    assert where.stdout.startswith(str(venv)), where.stdout  # the installed copy, not the checkout
    res = _run([exe, "service", "install", "--dry-run", "--manager", "systemd"], timeout=60)
    assert f"ExecStart={exe} start --foreground" in res.stdout  # templates load from the wheel

    started = _run(
        [exe, "start", "--port", "0", "--agent-cmd", f"{sys.executable} -c pass"], 60, cwd=tmp_path
    )
    try:
        match = re.search(r"Open in a browser: (http://127\.0\.0\.1:\d+/)(\?token=\S+)", started.stdout)
        assert match, started.stdout
        health = get_json(match.group(1) + "health")
        assert health["status"] == "ok" and health["version"] == __version__
        if (REPO_ROOT / "qwen_daemon" / "web" / "index.html").is_file():  # the web UI, once it exists
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(match.group(1) + match.group(2), timeout=10) as resp:
                assert resp.status == 200 and resp.headers.get_content_type() == "text/html"
    finally:
        _run([exe, "stop"], timeout=120)


def _installed(package: str) -> bool:
    res = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package], capture_output=True, text=True)
    return res.returncode == 0 and "installed" in res.stdout.split()


def test_debian_package_installs_the_user_unit(tmp_path: Path) -> None:
    need_root()
    need_tool("dpkg-buildpackage", "dh", "dpkg")
    pip = subprocess.run(["/usr/bin/python3", "-m", "pip", "--version"], capture_output=True)
    need(pip.returncode == 0, "python3-pip (for /usr/bin/python3) is not installed")
    need(not _installed("qwen-daemon"), "a qwen-daemon package is already installed here; not replacing it")
    out = tmp_path / "deb"
    _run([REPO_ROOT / "packaging" / "build-deb.sh", out], timeout=480)
    (deb,) = out.glob("qwen-daemon_*.deb")
    assert deb.name.startswith(f"qwen-daemon_{__version__}-")
    listing = _run(["dpkg-deb", "--contents", deb], timeout=60).stdout
    assert "./usr/lib/systemd/user/qwen-daemon.service" in listing

    unit = Path("/usr/lib/systemd/user") / SERVICE
    try:
        _run(["dpkg", "-i", deb], timeout=120)
        assert unit.read_text(encoding="utf-8") == templates.load(templates.UNIT_TEMPLATE)
        assert Path("/usr/lib/systemd/user/qwen-daemon.socket").is_file()
        assert (
            _run(["/usr/bin/qwen-daemon", "--version"], timeout=60).stdout.strip()
            == f"qwen-daemon {__version__}"
        )
        runtime = tmp_path / "analyze-run"
        runtime.mkdir(mode=0o700)
        res = subprocess.run(
            ["systemd-analyze", "--user", "verify", "--man=no", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**_clean_env(), "XDG_RUNTIME_DIR": str(runtime)},
        )
        assert res.stdout + res.stderr == ""  # /usr/bin/qwen-daemon exists now: a full check
        _run_packaged_unit(tmp_path)
    finally:
        subprocess.run(["dpkg", "--purge", "qwen-daemon"], capture_output=True, timeout=120)
    assert not unit.exists() and not Path("/usr/lib/qwen-daemon").exists()


def _run_packaged_unit(tmp_path: Path) -> None:
    """A user who runs `systemctl --user start qwen-daemon` gets a daemon managed by systemd."""
    need_user_manager()
    with user_manager(tmp_path / "wum") as m:
        m.configure(port=0, agent_cmd="python3 -c pass")  # python3 is on the packaged unit's PATH
        m.systemctl("start", SERVICE)
        props = m.show()
        assert props["FragmentPath"] == f"/usr/lib/systemd/user/{SERVICE}"
        health = m.health()
        assert health is not None and health["pid"] == int(props["MainPID"]), m.log_tail()
        env = {k: v for k, v in m.env.items() if k != "PYTHONPATH"}
        res = subprocess.run(
            ["/usr/bin/qwen-daemon", "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0 and "managed by systemd: active (running)" in res.stdout, res.stdout
        m.systemctl("stop", SERVICE)
