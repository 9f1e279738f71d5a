"""The modes an agent offers a session (plan, default, auto-edit...), in the daemon's shape.

A module of its own because the session (``set_mode``), the manager (a mode asked for at
creation) and the lifecycle (a mode put back after a restore) all read them, and the lifecycle
must not import the session (which calls into it).
"""

from __future__ import annotations

from qwen_daemon.contract.modes import Mode, Modes
from qwen_daemon.errors import BadRequest


def mode_ids(modes: list[Mode]) -> list[str]:
    """The ids of the modes offered (``Modes.available``, or an agent's list in ``/api/agents``)."""
    return [m["id"] for m in modes]


def offered_modes(modes: Modes | None) -> list[str]:
    """The ids of the modes a session's agent offers it (none when it named none)."""
    return mode_ids(modes["available"]) if modes is not None else []


def require_offered(mode_id: str, available: list[str]) -> None:
    """Refuse (400) a mode id that is not among ``available``, naming the ones that are (its form
    was checked with the request body: ``contract.bodies.ModeId``)."""
    if mode_id not in available:
        raise BadRequest(f"mode {mode_id!r} is not offered; choose one of: {', '.join(available)}")
