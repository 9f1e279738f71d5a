"""Tests that need the machine itself: a systemd user manager, systemd-analyze, xmllint, dpkg.

Where such a thing cannot exist (not root, not Linux, tool not installed) the test is skipped
with the reason. CI sets ``QWEN_DAEMON_REQUIRE_SYSTEMD=1`` (see ``.ci/run``): there every such
skip is a failure instead, so a broken set-up can never pass as "skipped".

The variable is read at import, i.e. at collection, before the autouse fixture scrubs every
``QWEN_DAEMON_*`` variable from the test's environment.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
#: CI has a copy of shared/ beside the clone; a developer's worktree has it at ../shared too.
SHARED = REPO_ROOT.parent / "shared"
REQUIRED = os.environ.get("QWEN_DAEMON_REQUIRE_SYSTEMD") == "1"


def need(ok: bool, reason: str) -> None:
    """Skip the test with ``reason`` unless ``ok`` — or fail, where CI requires it to run."""
    if ok:
        return
    if REQUIRED:
        pytest.fail(f"{reason} — QWEN_DAEMON_REQUIRE_SYSTEMD=1 requires this test to run here")
    pytest.skip(reason)


def need_tool(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    need(not missing, f"{', '.join(missing)} not installed (`make test` installs it when run as root)")


def need_root() -> None:
    need(sys.platform == "linux", "needs Linux")
    need(os.geteuid() == 0, "needs root (a private systemd user manager, dpkg -i)")
