#!/usr/bin/env python3
"""A stand-in for macOS ``launchctl``, first on PATH in the launchd tests.

It records every call (one JSON argv per line in ``$FAKE_LAUNCHCTL_DIR/calls.jsonl``) and acts
like launchd for the verbs qwen-daemon uses, so the tests see real effects, not just argv:

``bootstrap gui/<uid> <plist>``   load the agent; RunAtLoad runs ProgramArguments with the plist's
                                  EnvironmentVariables (PATH!) and output paths, detached
``bootout gui/<uid>/<label>``     SIGTERM the job (SIGKILL after ExitTimeOut) and unload it
``kickstart [-k] gui/<uid>/<label>``  start it if not running; ``-k`` kills it first
``print gui/<uid>/<label>``       launchctl's key = value block (state, pid, runs), exit 113 if unknown
``print gui/<uid>``               the domain itself; with ``FAKE_LAUNCHCTL_NO_GUI=1`` it is missing, as
                                  in an ssh session of a user not logged in at the Mac (exit 113)

Errors use launchctl's exit codes and messages. A domain other than ``gui/<our uid>`` is refused.
"""

from __future__ import annotations

import json
import os
import plistlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STATE_DIR = Path(os.environ["FAKE_LAUNCHCTL_DIR"])
DOMAIN = f"gui/{os.getuid()}"


def _load() -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((STATE_DIR / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        state = {}
    return state


def _save(state: dict[str, Any]) -> None:
    (STATE_DIR / "state.json").write_text(json.dumps(state), encoding="utf-8")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _fail(code: int, message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def _service(target: str) -> str:
    domain, _, label = target.rpartition("/")
    if domain != DOMAIN:
        _fail(1, f"Bad request: not our domain {domain!r} (expected {DOMAIN})")
    return label


def _spawn(job: dict[str, Any]) -> None:
    doc = plistlib.loads(Path(job["plist"]).read_bytes())
    argv = doc["ProgramArguments"]
    if not (argv[0].startswith("/") and os.access(argv[0], os.X_OK)):
        _fail(78, f"ProgramArguments[0] {argv[0]!r} is not an absolute executable")
    env = {**os.environ, **doc.get("EnvironmentVariables", {})}
    env.pop("FAKE_LAUNCHCTL_DIR", None)
    out = open(doc["StandardOutPath"], "ab")  # noqa: SIM115 - handed to the child
    err = out if doc["StandardErrorPath"] == doc["StandardOutPath"] else open(doc["StandardErrorPath"], "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd="/", start_new_session=True
    )
    job.update(pid=proc.pid, runs=job.get("runs", 0) + 1, exit_timeout=doc.get("ExitTimeOut", 20))


def _terminate(job: dict[str, Any]) -> None:
    pid = job.get("pid")
    if not pid or not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + job.get("exit_timeout", 20)
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def main(args: list[str]) -> None:
    with (STATE_DIR / "calls.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(args) + "\n")
    state = _load()
    verb, rest = (args[0], args[1:]) if args else ("", [])
    if verb == "bootstrap":
        domain, plist = rest
        if domain != DOMAIN:
            _fail(1, f"Bad request: not our domain {domain!r}")
        label = plistlib.loads(Path(plist).read_bytes())["Label"]
        if label in state:
            _fail(5, "Bootstrap failed: 5: Input/output error")
        job = {"plist": plist}
        if plistlib.loads(Path(plist).read_bytes()).get("RunAtLoad"):
            _spawn(job)
        state[label] = job
    elif verb == "bootout":
        label = _service(rest[0])
        if label not in state:
            _fail(3, "Boot-out failed: 3: No such process")
        _terminate(state.pop(label))
    elif verb == "kickstart":
        kill = rest[0] == "-k"
        label = _service(rest[-1])
        if label not in state:
            _fail(113, f'Could not find service "{label}" in domain for user gui: {os.getuid()}')
        job = state[label]
        if kill:
            _terminate(job)
        if kill or not _alive(job.get("pid", 0)):
            _spawn(job)
    elif verb == "print" and rest == [DOMAIN]:
        if os.environ.get("FAKE_LAUNCHCTL_NO_GUI") == "1":
            _fail(113, f"Bad request.\nCould not find domain for user gui: {os.getuid()}")
        print(f"{DOMAIN} = {{\n\ttype = gui\n\thandle = {os.getuid()}\n}}")
    elif verb == "print":
        label = _service(rest[0])
        if label not in state:
            _fail(
                113, f'Bad request.\nCould not find service "{label}" in domain for user gui: {os.getuid()}'
            )
        job = state[label]
        running = _alive(job.get("pid", 0))
        print(f"{DOMAIN}/{label} = {{\n\tactive count = {int(running)}\n\tpath = {job['plist']}")
        print(f"\ttype = LaunchAgent\n\tstate = {'running' if running else 'not running'}\n")
        print(f"\truns = {job.get('runs', 0)}")
        if running:
            print(f"\tpid = {job['pid']}")
        print("\tlast exit code = (never exited)\n}")
    else:
        _fail(64, f"Unrecognized subcommand: {verb}")
    _save(state)


if __name__ == "__main__":
    main(sys.argv[1:])
