"""The SDK boundary: the only module of the daemon that imports ``agent-client-protocol``.

Everything here is about the SDK rather than about one agent's lifecycle (``host``): the relay
subclass of its Connection, built lazily because importing the SDK is slow, its error type, and
how its errors are put into words for the user. ``host`` (and anything else) reaches the SDK only
through the names below, so an SDK upgrade is checked and adapted here and in
``tests/test_acp_sdk_contract.py``, which pins the one private method this module overrides.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acp import RequestError
    from acp.connection import Connection as Connection  # re-exported: the type host holds

#: An agent's answer to a request we send, or to a request it sent us: ``(method, params,
#: is_notification) -> result`` (the SDK's ``MethodHandler``).
Handler = Callable[[str, Any, bool], Awaitable[Any]]


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

            # The one private SDK method the daemon overrides (there is no public hook that skips
            # the task per notification: ``add_observer`` deep-copies every message and the
            # notification still gets its task). tests/test_acp_sdk_contract.py fails if the
            # pinned SDK renames it, changes its signature or stops calling it per message.
            def _process_message(self, message: dict[str, Any]) -> None:
                if message.get("method") == "session/update" and "id" not in message and self.on_update:
                    self.on_update(message.get("params"))
                    return
                super()._process_message(message)

        _RELAY_CONNECTION = RelayConnection
        gc.freeze()  # the SDK's modules stay for good: keep full collections from rescanning them
    return _RELAY_CONNECTION


def open_relay_connection(
    handler: Handler,
    on_update: Callable[[Any], None],
    writer: asyncio.StreamWriter,
    reader: asyncio.StreamReader,
) -> Connection:
    """A connection to an agent on ``writer``/``reader`` (its stdin/stdout) that hands every
    ``session/update`` notification's params to ``on_update`` inline, in arrival order, and
    everything else to ``handler`` as the SDK does."""
    conn = relay_connection_class()(handler, writer, reader)
    conn.on_update = on_update  # type: ignore[attr-defined]
    return conn


def request_error() -> type[RequestError]:
    """The SDK's JSON-RPC error: what a failed request raises, and what a handler raises to
    answer the agent with an error (``request_error().invalid_params(...)``)."""
    from acp import RequestError

    return RequestError
