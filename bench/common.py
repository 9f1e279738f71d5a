"""What every bench script shares: an isolated home, process memory, and the two daemons under test.

Why a module: each script runs our daemon and upstream ``qwen serve`` (same pinned package, same
fake OpenAI-compatible server) in one run, so both see the same machine load; the helpers make
sure they are started, measured and stopped the same way. Results are merged into
``docs/bench-results.json``, from which ``bench/report.py`` writes ``docs/benchmarks.md`` and the
plot.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(sys.executable).parent
QWEN_CLI = Path(sys.prefix) / "qwen-code" / "node_modules" / "@qwen-code" / "qwen-code" / "cli.js"
BENCH_AGENT = str(ROOT / "bench" / "bench_agent.py")
RESULTS = ROOT / "docs" / "bench-results.json"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_idle_share(seconds: float = 1.0) -> float:
    """Share of this machine's CPU time that was idle over the next ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def settle(idle: float = 0.9, timeout: float = 90.0) -> float:
    """Wait (up to ``timeout``) until the CPU is at least ``idle`` idle, so that what an earlier
    script left running (agents being reaped, page-cache writeback) is not measured here.
    Returns the idle share reached; the caller prints it with its figures."""
    deadline = time.monotonic() + timeout
    share = cpu_idle_share()
    while share < idle and time.monotonic() < deadline:
        share = cpu_idle_share()
    return share


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (whatever process group they put themselves in)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_rss_kib(pid: int) -> int:
    return sum(rss_kib(p) for p in descendants(pid))


def interpreter() -> str:
    """The Python that ran the daemon (the venv's): how it was built moves every figure here (Debian's
    measured ~30% faster than a default pyenv build on the same machine)."""
    return f"CPython {platform.python_version()} ({Path(sys.base_prefix, 'bin', 'python3')})"


def save_results(section: str, data: dict[str, Any]) -> None:
    """Merge one script's figures into the results file (other scripts' sections are kept)."""
    try:
        results = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        results = {}
    data["load_average"] = round(load_average(), 2)
    data["interpreter"] = interpreter()
    data["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    results[section] = data
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 120) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        text = reply.read()
    return json.loads(text) if text else None


@dataclass
class Home:
    """An isolated HOME/XDG tree and the environment for both daemons and their agents."""

    root: Path
    env: dict[str, str]

    def workspace(self, name: str) -> Path:
        path = self.root / "ws" / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@contextmanager
def isolated_home(fake_llm_url: str | None = None) -> Iterator[Home]:
    root = Path(tempfile.mkdtemp(prefix="qwen-daemon-bench-"))
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWEN_DAEMON_")}
    if fake_llm_url is not None:
        from tests.support.qwen import prepare_qwen_home

        env.update(prepare_qwen_home(home, fake_llm_url))
    env["HOME"] = str(home)
    for name, sub in (("XDG_CONFIG_HOME", "c"), ("XDG_STATE_HOME", "s"), ("XDG_RUNTIME_DIR", "r")):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
        env[name] = str(root / sub)
    env["PYTHONPATH"] = str(ROOT)
    try:
        yield Home(root, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def in_process_home() -> Iterator[tuple[Home, Any]]:
    """For a daemon run inside this process: an isolated home put into ``os.environ``, where the
    real, pinned Qwen Code talks to the tests' fake OpenAI-compatible server (yielded second)."""
    from tests.support.fake_openai import running_fake_openai

    saved = dict(os.environ)
    with running_fake_openai() as fake, isolated_home(fake.base_url) as home:
        os.environ.clear()
        os.environ.update(home.env)
        try:
            yield home, fake
        finally:
            os.environ.clear()
            os.environ.update(saved)


@dataclass
class OurDaemon:
    pid: int
    url: str
    token: str
    start_seconds: float
    health_seconds: float


def start_our_daemon(home: Home, *args: str, env: dict[str, str] | None = None) -> OurDaemon:
    """``qwen-daemon start`` (detached): time until it returns, and until ``/health`` answers."""
    began = time.perf_counter()
    run = subprocess.run(
        [str(VENV_BIN / "qwen-daemon"), "start", "--port", "0", *args],
        env={**home.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    started = time.perf_counter() - began
    if run.returncode != 0:
        raise RuntimeError(f"qwen-daemon start failed: {run.stderr}")
    info = json.loads((home.root / "r" / "qwen-daemon" / "daemon.json").read_text())
    token = (home.root / "c" / "qwen-daemon" / "token").read_text().strip()
    http_json("GET", info["url"].rstrip("/") + "/health")
    healthy = time.perf_counter() - began
    return OurDaemon(int(info["pid"]), info["url"].rstrip("/"), token, started, healthy)


def stop_our_daemon(home: Home, daemon: OurDaemon) -> None:
    from qwen_daemon.cli import wait_gone

    subprocess.run([str(VENV_BIN / "qwen-daemon"), "stop"], env=home.env, capture_output=True, timeout=60)
    wait_gone(daemon.pid, 30.0)


@dataclass
class QwenServe:
    proc: subprocess.Popen[bytes]
    url: str
    ready_seconds: float


@contextmanager
def qwen_serve(home: Home, *workspaces: Path) -> Iterator[QwenServe]:
    """Upstream ``qwen serve`` on a free loopback port; ready = ``/health`` answers."""
    port = free_port()
    argv = ["node", str(QWEN_CLI), "serve", "--port", str(port), "--no-web", "--max-sessions", "0"]
    for ws in workspaces:
        argv += ["--workspace", str(ws)]
    log = (home.root / "qwen-serve.log").open("ab")
    began = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env={**home.env, "QWEN_CODE_NO_RELAUNCH": "true"},
        cwd=str(workspaces[0]) if workspaces else str(home.root),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = None
        for _ in range(6000):  # 60 s
            try:
                http_json("GET", url + "/health", timeout=1)
                ready = time.perf_counter() - began
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.01)
        if ready is None:
            raise RuntimeError("qwen serve did not answer /health within 60 s")
        yield QwenServe(proc, url, ready)
    finally:
        for pid in descendants(proc.pid)[1:]:
            _kill(pid)
        _kill(proc.pid)
        proc.wait(30)
        log.close()


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
