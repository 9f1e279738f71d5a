"""One writer of whole files (:func:`qwen_daemon.private_files.write_private_file`), used by every
module that writes one: the daemon's private files and the service's unit files alike."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import qwen_daemon
from qwen_daemon.private_files import write_private_file
from qwen_daemon.service.base import write_if_changed

PACKAGE = Path(qwen_daemon.__file__).resolve().parent
#: what writes a file aside and renames it, or writes through a name
WRITERS = {"mkstemp", "NamedTemporaryFile", "write_text", "write_bytes", "os.replace", "os.rename"}
#: calls of those names that are not a second writer, and why
ALLOWED = {
    "private_files.py": "the one writer",
    "sessions/store.py": "os.replace moves a damaged database aside (a rename of what is there)",
    "contract/js.py": "writes the generated protocol.js into the source tree (a developer command)",
}


def _writer(call: ast.Call) -> str | None:
    """The writer ``call`` is (a name of WRITERS, or ``open`` to write a whole file), or None.
    Appending (``open(fd, "a")`` on a checked descriptor: the logs) is not
    writing a whole file (see :func:`qwen_daemon.private_files.open_private`)."""
    func = call.func
    if isinstance(func, ast.Attribute):
        owner = func.value.id + "." if isinstance(func.value, ast.Name) and func.value.id == "os" else ""
        name = owner + func.attr
    elif isinstance(func, ast.Name):
        name = func.id
    else:
        return None
    if name == "open":
        modes = [a for a in call.args[1:2]] + [k.value for k in call.keywords if k.arg == "mode"]
        writes = any(isinstance(m, ast.Constant) and set(str(m.value)) & set("wx") for m in modes)
        return "open for writing" if writes else None
    return name if name in WRITERS else None


def test_no_other_module_writes_a_file_its_own_way() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and (name := _writer(node)) is not None:
                found.append(f"{rel}:{node.lineno} {name}")
    assert not found, found


def test_a_unit_file_is_0644_and_its_directory_keeps_its_mode(tmp_path: Path) -> None:
    units = tmp_path / "systemd" / "user"
    units.mkdir(parents=True, mode=0o755)
    units.chmod(0o755)
    unit = units / "qwen-daemon.service"
    assert write_if_changed(unit, "[Unit]\n")
    assert unit.read_text() == "[Unit]\n"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert stat.S_IMODE(units.stat().st_mode) == 0o755  # not ours to make private
    assert not write_if_changed(unit, "[Unit]\n")
    assert [p.name for p in units.iterdir()] == [unit.name]  # no temporary file left behind


def test_a_link_at_the_name_is_replaced_never_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("theirs")
    for name, write in (
        ("private", lambda p: write_private_file(p, "ours")),
        ("unit", lambda p: write_if_changed(p, "ours")),
    ):
        target = tmp_path / name / "file"
        target.parent.mkdir()
        target.symlink_to(victim)
        write(target)
        assert victim.read_text() == "theirs"
        assert not target.is_symlink() and target.read_text() == "ours"


def test_a_private_file_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    target = tmp_path / "state" / "flags.json"
    write_private_file(target, "{}", durable=False)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert target.stat().st_uid == os.geteuid()
