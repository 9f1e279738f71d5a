"""A session's modes (plan, default, auto-edit, …) in the daemon's vocabulary.

Why its own shape: ACP's ``{currentModeId, availableModes}`` is translated in ``agents/`` like
every event, so the session detail, ``GET /api/agents`` and the browser read one naming scheme.
A mode change itself is the ``mode_changed`` event (:mod:`qwen_daemon.contract.events`).
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class Mode(TypedDict):
    """One mode an agent offers."""

    id: str
    name: str
    description: NotRequired[str]


class Modes(TypedDict):
    """The modes an agent offers a session and the one in force (None until the agent says)."""

    available: list[Mode]
    current_mode_id: str | None
