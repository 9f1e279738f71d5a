"""The modes an agent offers a session (plan, default, auto-edit...), as ACP lists them.

A module of its own because the session (``set_mode``), the manager (a mode asked for at
creation) and the lifecycle (a mode put back after a restore) all read them, and the lifecycle
must not import the session (which calls into it).
"""

from __future__ import annotations

from typing import Any

from qwen_daemon.errors import BadRequest


def mode_ids(modes: list[Any]) -> list[Any]:
    """The ids in an ACP ``availableModes`` list."""
    return [m.get("id") for m in modes if isinstance(m, dict)]


def require_offered(mode_id: str, available: list[Any]) -> None:
    """Refuse (400) a mode id that is not among ``available``, naming the ones that are (its form
    was checked with the request body: ``contract.bodies.ModeId``)."""
    if mode_id not in available:
        raise BadRequest(f"mode {mode_id!r} is not offered; choose one of: {', '.join(map(str, available))}")
