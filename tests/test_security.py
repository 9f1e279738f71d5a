"""Hostile input and secrets: each test is one attack, asserting the refusal and that nothing changed."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.websocket

from qwen_daemon.config import Paths
from qwen_daemon.discovery import read_discovery
from qwen_daemon.server.stream import MAX_CLIENTS_PER_SESSION
from tests.support.daemon import FAKE_AGENT, Api, fake_settings, running_daemon, serve
from tests.support.probe import cli, start_daemon, until

pytestmark = pytest.mark.timeout(60)


async def test_token_rotation_revokes_the_old_token_and_its_connections(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        old = api.daemon.token
        client = await api.ws(sid)
        await client.recv()  # hello
        reply = await api.call("POST", "/api/token/rotate", {})
        assert reply.status == 200 and reply.body["closed_websockets"] == 1
        new = api.daemon.settings.paths.token_file.read_text().strip()
        assert new != old and old not in json.dumps(reply.body) and new not in json.dumps(reply.body)
        while await client.recv() is not None:
            pass  # the replay, then the close
        assert client.conn.close_code == 4001
        before = (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"]
        refused = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "say hi"}, token=old)
        assert refused.status == 401
        with pytest.raises(tornado.httpclient.HTTPClientError):
            await api.ws(sid, token=old)
        ok = await api.call("GET", f"/api/sessions/{sid}", token=new)
        assert ok.status == 200 and ok.body["last_seq"] == before  # nothing was sent to the agent

    await serve(tmp_path, body)


def test_cli_token_rotate_without_a_daemon(paths: Paths) -> None:
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.token_file.write_text("x" * 43 + "\n")
    res = subprocess.run(
        [sys.executable, "-m", "qwen_daemon", "token", "rotate"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    new = paths.token_file.read_text().strip()
    assert new != "x" * 43 and len(new) >= 43 and new not in res.stdout
    assert stat.S_IMODE(paths.token_file.stat().st_mode) == 0o600


async def test_oversized_websocket_frame_is_refused_with_1009(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        client = await api.ws(sid)
        await client.recv()
        before = (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"]
        await client.send({"type": "ping", "id": "x" * (2 * 1024 * 1024)})
        while await client.recv() is not None:
            pass
        assert client.conn.close_code == 1009
        after = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert after["last_seq"] == before and after["state"] == "idle"  # the session is untouched

    await serve(tmp_path, body)


async def test_too_many_clients_on_one_session_get_429(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        for _ in range(MAX_CLIENTS_PER_SESSION):
            await (await api.ws(sid)).recv()
        with pytest.raises(tornado.httpclient.HTTPClientError) as info:
            await api.ws(sid)
        assert info.value.code == 429

    await serve(tmp_path, body)


async def test_too_open_permissions_are_repaired_at_start(
    tmp_path: Path, paths: Paths, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's own directories and files are made private again; the token is not among
    them (issue 14: others may have read it, so start refuses it, see tests/hardening/test_files.py)."""
    for directory in (paths.config_dir, paths.state_dir, paths.runtime_dir):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    paths.start_flags_file.write_text("{}")
    paths.start_flags_file.chmod(0o644)

    async def main() -> None:
        with caplog.at_level(logging.WARNING):
            async with running_daemon(fake_settings(tmp_path, paths=paths)):
                pass

    await main()
    assert stat.S_IMODE(paths.config_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.start_flags_file.stat().st_mode) == 0o600
    assert "mode 0644" in caplog.text and "mode 0755" in caplog.text


async def test_token_never_in_logs_or_process_arguments(paths: Paths, tmp_path: Path) -> None:
    start_daemon()
    info = read_discovery(paths)
    assert info is not None
    token = paths.token_file.read_text().strip()
    try:
        (tmp_path / "ws").mkdir()

        async def traffic() -> None:
            http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
            base = info.url.rstrip("/")
            auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            body = json.dumps({"cwd": str(tmp_path / "ws")})
            await http.fetch(f"{base}/api/sessions", method="POST", headers=auth, body=body)
            for path in (f"/?token={token}", f"/api/sessions?token={token}", "/api/nowhere"):
                await http.fetch(base + path, raise_error=False)
            await http.fetch(
                f"{base}/api/sessions", headers={"Authorization": "Bearer wrong"}, raise_error=False
            )
            http.close()

        await traffic()
        for pid in [info.pid, *_children(info.pid)]:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert token.encode() not in cmdline
    finally:
        cli("stop")
    logs = [paths.log_file, *paths.agent_log_dir.glob("*.log")]
    assert paths.log_file.exists()
    for log in logs:
        assert token not in log.read_text(), log


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().split(")")[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


AGENT = ("--agent-cmd", f"{sys.executable} {FAKE_AGENT}")


@pytest.mark.usefixtures("daemon_reaper")
def test_remote_access_is_opt_in_and_needs_tls_or_an_explicit_risk(paths: Paths) -> None:
    refused = cli("start", "--host", "0.0.0.0", "--port", "0", *AGENT)
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
    no_tls = cli("start", "--host", "0.0.0.0", "--port", "0", "--allow-remote", *AGENT)
    assert no_tls.returncode == 2 and "--certfile" in no_tls.stderr and "--insecure-remote" in no_tls.stderr
    assert read_discovery(paths) is None
    started = cli("start", "--host", "0.0.0.0", "--port", "0", "--allow-remote", "--insecure-remote", *AGENT)
    assert started.returncode == 0, started.stderr
    try:
        assert "WITHOUT TLS" in paths.log_file.read_text()
        assert cli("status").returncode == 0
    finally:
        assert cli("stop").returncode == 0


@pytest.mark.usefixtures("daemon_reaper")
def test_tls_serves_https_and_the_cli_still_works(paths: Paths, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=qwen.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    res = cli("start", "--port", "0", "--certfile", str(cert), "--keyfile", str(key), *AGENT)
    assert res.returncode == 0, res.stderr
    try:
        info = read_discovery(paths)
        assert info is not None and info.url.startswith("https://127.0.0.1:")
        assert "https://" in res.stdout
        status = cli("status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
        import ssl
        import urllib.error
        import urllib.request

        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP is not served
            urllib.request.urlopen(info.url.replace("https", "http") + "health", timeout=5)
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        with urllib.request.urlopen(info.url + "health", timeout=5, context=context) as resp:
            assert json.load(resp)["status"] == "ok"
    finally:
        assert cli("stop").returncode == 0


async def test_configured_host_names_are_served_and_others_refused(tmp_path: Path) -> None:
    async def main() -> None:
        settings = fake_settings(tmp_path, allowed_hosts=("tunnel.example",))
        async with running_daemon(settings) as api:
            ok = await api.call("GET", "/api/sessions", headers={"Host": "tunnel.example"})
            assert ok.status == 200
            forged = await api.call("GET", "/api/sessions", headers={"Host": "evil.example"})
            assert forged.status == 403 and forged.body["error"]["code"] == "forbidden_host"
            rebinding = await api.call("GET", "/health", headers={"Host": "attacker.example:7861"})
            assert rebinding.status == 403

    await main()


async def test_oversized_body_gets_413_and_changes_nothing(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        before = (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"]
        huge = json.dumps({"text": "say " + "x" * 600_000}).encode()
        reply = await api.call("POST", f"/api/sessions/{sid}/prompt", raw=huge)
        assert reply.status == 413 and reply.body["error"]["code"] == "payload_too_large"
        too_long = await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "x" * 100_001})
        assert too_long.status == 400 and "longer than" in too_long.body["error"]["message"]
        assert (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"] == before

    await serve(tmp_path, body)


async def test_failed_logins_are_throttled_without_locking_out_the_real_token(tmp_path: Path) -> None:
    from qwen_daemon.server.throttle import MAX_FAILURES

    async def body(api: Api, ws: Path) -> None:
        statuses = [
            (await api.call("GET", "/api/sessions", token=f"guess{i}")).status
            for i in range(MAX_FAILURES + 3)
        ]
        assert statuses[:MAX_FAILURES] == [401] * MAX_FAILURES
        assert statuses[MAX_FAILURES:] == [429] * 3
        throttled = await api.call("GET", "/api/sessions", token="guess-again")
        assert throttled.status == 429 and int(throttled.headers["Retry-After"]) >= 1
        assert (await api.call("GET", "/api/sessions")).status == 200  # the right token still works

    await serve(tmp_path, body)


async def test_cross_site_text_plain_post_cannot_act(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.create(ws))["id"]
        before = (await api.call("GET", f"/api/sessions/{sid}")).body["last_seq"]
        # what a foreign page can send without a preflight: a simple text/plain POST, no token
        forged = await api.call(
            "POST",
            f"/api/sessions/{sid}/prompt",
            raw=b'{"text": "say pwned"}',
            token=None,
            headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
        )
        assert forged.status in (401, 403)
        # even holding the token, text/plain is not accepted as JSON
        plain = await api.call(
            "POST",
            f"/api/sessions/{sid}/prompt",
            raw=b'{"text": "say pwned"}',
            headers={"Content-Type": "text/plain"},
        )
        assert plain.status in (400, 403)
        after = (await api.call("GET", f"/api/sessions/{sid}")).body
        assert after["last_seq"] == before and after["state"] == "idle"

    await serve(tmp_path, body)


async def test_idle_connections_are_capped_and_cannot_starve_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Connections that send nothing used to pile up until the descriptors ran out; accept() then
    failed on every loop turn (100% CPU, a traceback per turn) and /health with it. At the cap a
    newcomer that sends nothing (or nothing with the token) is refused, but one with the token or
    asking for /health gets in, the oldest token-less connection being closed to make room (the
    old cap refused everyone: tests/hardening/test_lockout.py); an authenticated one never is."""
    from qwen_daemon import runtime

    monkeypatch.setattr(runtime, "MAX_CONNECTIONS", 20)
    monkeypatch.setattr(runtime, "HEADER_TIMEOUT", 5.0)

    async def body(api: Api, ws: Path) -> None:
        server = api.daemon.http_server
        assert server is not None and server.max_connections == 20
        reader, writer = await asyncio.open_connection("127.0.0.1", api.daemon.port)
        auth = f"Authorization: Bearer {api.daemon.token}"
        request = f"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n\r\n"

        async def authenticated_call() -> bytes:
            writer.write(request.encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            return head.split(b"\r\n")[0]

        assert b" 200 " in await authenticated_call()  # this connection is now trusted
        idle = [await asyncio.open_connection("127.0.0.1", api.daemon.port) for _ in range(60)]
        await until(lambda: server.open_connections == 20 and server.refused == 41 and server.evicted == 0)
        assert b" 200 " in await authenticated_call()  # never closed to make room
        assert (await api.call("GET", "/health")).status == 200  # room made for it
        assert server.evicted == 1
        await until(lambda: server.open_connections == 0, timeout=30)  # no request head in time
        for _reader, idle_writer in [*idle, (reader, writer)]:
            idle_writer.close()

    await serve(tmp_path, body)
    refusals = [r for r in caplog.records if "connections are open" in r.getMessage()]
    assert len(refusals) == 1, "one line per minute, not one per closed connection"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.usefixtures("daemon_reaper")
def test_the_daemon_raises_its_open_files_limit(paths: Paths) -> None:
    """Started with systemd's usual soft limit of 1,024 (or less), it asks for 8,192."""
    import resource

    from qwen_daemon.server.connections import WANTED_FILES

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)

    def lower_the_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    started = subprocess.run(
        [sys.executable, "-m", "qwen_daemon", "start", "--port", "0", *AGENT],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lower_the_limit,
    )
    assert started.returncode == 0, started.stderr
    try:
        info = read_discovery(paths)
        assert info is not None
        line = next(x for x in Path(f"/proc/{info.pid}/limits").read_text().splitlines() if "open files" in x)
        soft = int(line.split()[3])
        assert soft == (WANTED_FILES if hard == resource.RLIM_INFINITY else min(WANTED_FILES, hard))
    finally:
        assert cli("stop").returncode == 0
