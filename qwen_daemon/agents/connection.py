"""The JSON-RPC connection to an agent process, as the host uses it.

Everything here is about the ``agent-client-protocol`` SDK rather than about one agent's
lifecycle (``host``): the relay subclass of its Connection, built lazily because importing the
SDK is slow, and how its errors are put into words for the user.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acp.connection import Connection


def describe_rpc_error(exc: BaseException) -> str:
    """The agent's own words for a failed request (e.g. "Authentication required")."""
    message = str(exc) or type(exc).__name__
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        detail = data.get("details") or data.get("message")
        if isinstance(detail, str) and detail and detail not in message:
            message = f"{message}: {detail}"
    return message


_RELAY_CONNECTION: type[Connection] | None = None


def relay_connection_built() -> bool:
    """Whether the SDK is imported already, so a start need not pay for it in a thread first."""
    return _RELAY_CONNECTION is not None


def relay_connection_class() -> type[Connection]:
    """The SDK's Connection, with ``session/update`` notifications delivered synchronously.

    Why: the SDK wraps every incoming notification in a task (plus a tracing span); updates are
    nearly all the traffic, and profiling the relay showed that wrapper as its largest single
    cost. Delivering them inline keeps their order and saves a task per event. Everything else
    (requests, responses, other notifications) goes through the SDK unchanged. Built on first use,
    in a thread (see ``AgentHost._spawn_and_initialize``), because importing the SDK costs 0.4-1.7 s: on the
    loop, that stalled every request and stream at the first agent's start.
    """
    global _RELAY_CONNECTION
    if _RELAY_CONNECTION is None:
        from acp.connection import Connection

        class RelayConnection(Connection):
            on_update: Callable[[Any], None] | None = None

            def _process_message(self, message: dict[str, Any]) -> None:
                if message.get("method") == "session/update" and "id" not in message and self.on_update:
                    self.on_update(message.get("params"))
                    return
                super()._process_message(message)

        _RELAY_CONNECTION = RelayConnection
        gc.freeze()  # the SDK's modules stay for good: keep full collections from rescanning them
    return _RELAY_CONNECTION
