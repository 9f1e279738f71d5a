"""CI must not pass with the system tests skipped: QWEN_DAEMON_REQUIRE_SYSTEMD=1 (set by .ci/run)
turns every "cannot run here" skip of tests/support/system.need into a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.system import REPO_ROOT


def test_a_required_system_test_fails_instead_of_skipping(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "from tests.support.system import need\n\n\n"
        "def test_probe():\n    need(False, 'no user manager here')\n"
    )
    for required, outcome in (("1", "1 failed"), ("0", "1 skipped")):
        res = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(probe)],
            cwd=tmp_path,
            env={**os.environ, "QWEN_DAEMON_REQUIRE_SYSTEMD": required, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert outcome in res.stdout, res.stdout + res.stderr
        assert "no user manager here" in res.stdout
