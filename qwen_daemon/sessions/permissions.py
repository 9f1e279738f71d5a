"""A session's permission requests: those waiting for an answer, and what became of the others.

Why a module of its own: the rules below are about requests, not turns, and each is tested here
without an agent (``tests/test_permissions.py``); the session only says when its state changes.

* **First answer wins.** A second one gets :class:`PermissionAlreadyAnswered` (409), as does one
  for a request that expired at a daemon restart (saying so); an id never seen gets
  :class:`PermissionNotFound` (404). The last :data:`ANSWERED_MEMORY` answered ids are remembered
  in memory; older ones are found in the store.
* **Stored before acted on.** An answer reaches the agent (its future resolves) only once its row
  is committed: were the commit lost (a full disk, then a crash), the restart would record the
  request expired while the agent had acted on it. While nothing can be committed an answer is
  refused with 507 rather than kept waiting.
* **Cancelled at once.** A cancel, the end of a turn or the agent withdrawing a request resolves
  it as ``cancelled`` without waiting for the commit: nothing acts on a refusal.
* **Expired at a restart.** A request pending when the daemon died can never be answered (the
  agent process that asked is gone): :meth:`PermissionRegistry.expire` records and announces it.

Every request and resolution is an event of the session (``permission_request``,
``permission_resolved``) and a row of the store.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from qwen_daemon.agents.questions import PermissionAsk, read_permission_request
from qwen_daemon.contract.events import PermissionRequest
from qwen_daemon.errors import PermissionAlreadyAnswered, PermissionNotFound
from qwen_daemon.sessions.events import utc_now
from qwen_daemon.sessions.ids import new_id
from qwen_daemon.sessions.persistence import Persistence

#: answered request ids remembered in memory (a later answer to one is a 409, not a 404)
ANSWERED_MEMORY = 1000
#: what the agent is told for a request nobody answered (cancel, turn end, withdrawn)
CANCELLED: dict[str, Any] = {"outcome": {"outcome": "cancelled"}}


class Emit(Protocol):
    """Appends one event to the session's log (``Session._emit``)."""

    def __call__(self, type_: str, **fields: Any) -> None: ...


@dataclass
class PendingPermission:
    """A permission request waiting for its answer; ``ask`` is it in the daemon's shape."""

    request_id: str
    ask: PermissionAsk
    future: asyncio.Future[dict[str, Any]]
    created_at: str = field(default_factory=utc_now)
    answers: dict[str, Any] | None = None  # once answered: the answers to its questions, as given

    def as_json(self) -> PermissionRequest:
        fields = {"request_id": self.request_id, **self.ask.fields(), "created_at": self.created_at}
        return cast(PermissionRequest, fields)  # the ask's fields are typed by questions.py


class PermissionRegistry:
    """The permission requests of one session (see the module's docstring for the rules)."""

    def __init__(
        self, session_id: str, persist: Persistence, emit: Emit, on_settled: Callable[[], None]
    ) -> None:
        self.session_id = session_id
        self.persist = persist
        self._emit = emit
        #: called each time the last pending request is resolved (the session's turn goes on)
        self._on_settled = on_settled
        self.pending: dict[str, PendingPermission] = {}
        self._answered: OrderedDict[str, str | None] = OrderedDict()

    def add(self, params: dict[str, Any]) -> PendingPermission:
        """Record a request the agent made (ACP ``session/request_permission`` params), store and
        announce it; the caller awaits its ``future`` for the agent's answer."""
        pending = PendingPermission(
            request_id=new_id(6),
            ask=read_permission_request(params),  # questions and plans in the daemon's one shape
            future=asyncio.get_running_loop().create_future(),
        )
        self.pending[pending.request_id] = pending
        self.persist.permission(self.session_id, pending.request_id, pending.as_json(), "pending")
        self._emit("permission_request", **pending.as_json())
        return pending

    def answer(self, request_id: str, option_id: str, answers: Any = None) -> None:
        """The first answer wins; later ones get PermissionAlreadyAnswered (409). ``answers`` (to the
        request's questions, ``{"0": "SQLite"}``) are checked first and sent as the agent reads them."""
        pending = self.pending.get(request_id)
        if pending is None:
            stored = self.persist.store.permission_status(self.session_id, request_id)
            if stored == "expired":
                raise PermissionAlreadyAnswered(
                    f"permission request {request_id} expired when the daemon restarted; "
                    "prompt again to let the agent ask anew"
                )
            if request_id in self._answered or stored is not None:
                raise PermissionAlreadyAnswered(f"permission request {request_id} was already answered")
            raise PermissionNotFound(f"no permission request {request_id} in session {self.session_id}")
        self.persist.require_writable()  # the agent would wait for a commit that cannot happen
        reply = pending.ask.answer(option_id, answers)  # BadRequest before anything is forwarded
        pending.answers = reply.answers
        self.resolve(pending, option_id, reply.response)

    def resolve(self, pending: PendingPermission, option_id: str | None, outcome: dict[str, Any]) -> None:
        """End a request with ``outcome`` for the agent: ``option_id`` chosen, or None (cancelled)."""
        self.pending.pop(pending.request_id, None)
        self._answered[pending.request_id] = option_id
        while len(self._answered) > ANSWERED_MEMORY:
            self._answered.popitem(last=False)

        def release() -> None:
            if not pending.future.done():
                pending.future.set_result(outcome)

        if option_id is not None:  # the agent acts on an answer only once it is on disk
            self.persist.permission(
                self.session_id, pending.request_id, pending.as_json(), "answered", release
            )
        else:
            release()
            self.persist.permission(self.session_id, pending.request_id, pending.as_json(), "answered")
        given = {} if pending.answers is None else {"answers": pending.answers}
        self._emit("permission_resolved", request_id=pending.request_id, option_id=option_id, **given)
        if not self.pending:
            self._on_settled()

    def withdraw(self, pending: PendingPermission) -> None:
        """The agent withdrew the request (it went away): nobody can answer it any more."""
        if pending.request_id in self.pending:
            self.resolve(pending, None, CANCELLED)

    def resolve_all(self) -> None:
        """Cancel every pending request (a cancel, the end of a turn, the agent gone)."""
        for pending in list(self.pending.values()):
            self.resolve(pending, None, CANCELLED)

    def expire(self, requests: list[dict[str, Any]]) -> None:
        """After a daemon restart: the stored requests that were pending can never be answered."""
        for request in requests:
            request_id = str(request.get("request_id"))
            self.persist.permission(self.session_id, request_id, request, "expired")
            self._emit("permission_resolved", request_id=request_id, option_id=None, expired=True)
