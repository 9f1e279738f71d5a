"""A small filesystem a test mounts (a tmpfs with ``size=``) to reproduce a full disk, and filling it.

Mounting needs root (or CAP_SYS_ADMIN) on Linux; elsewhere the tests that need it are skipped
saying so, except under CI (``CI=true``), which runs as root and where a skip would hide a broken
set-up: there they fail instead. A fixture of the whole suite (registered in ``tests/conftest.py``)
because the API tests and the browser tests both use it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRED = os.environ.get("CI") == "true"
#: big enough for the database, its WAL and the agent's log; small enough to fill at once
SIZE = "8m"


def cannot_mount(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} — CI=true requires this test to run (CI runs as root)")
    pytest.skip(reason)


@pytest.fixture
def small_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A tmpfs of :data:`SIZE` as ``XDG_STATE_HOME``; unmounted afterwards, whatever happened."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if sys.platform != "linux":
        cannot_mount("mounting a tmpfs needs Linux")
    if os.geteuid() != 0:
        cannot_mount("mounting a tmpfs needs root (CAP_SYS_ADMIN); run as root to reproduce a full disk")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        cannot_mount(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    monkeypatch.setenv("XDG_STATE_HOME", str(mount_point))
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            # still busy (a failed test's agent holds its log open): detach it now, freed once closed
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """A file taking every free byte of the filesystem (ENOSPC at one byte)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = 1 << 20
        while chunk:  # at most ~21 halvings; each size is written until it no longer fits
            try:
                os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                chunk //= 2
    finally:
        os.close(fd)
    return filler
