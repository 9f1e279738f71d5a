"""The component schemas of the OpenAPI document, derived from the contract (``openapi.py`` holds
the paths).

Nothing here is written by hand any more: the request bodies (``contract/bodies.py``), the
responses (``contract/responses.py``) and every event (``contract/events.py`` ``EVENTS``: one
schema per type and ``Event``, their ``oneOf`` discriminated by ``type``) go through the deriver
(``contract/schema.py``). ``tests/test_contract.py`` fails when the served document and a fresh
derivation differ. JSON Schema 2020-12, as OpenAPI 3.1 requires.
"""

from __future__ import annotations

import functools
from typing import Any

from qwen_daemon.contract.bodies import BODIES, AnswersShape, Id
from qwen_daemon.contract.events import EVENTS, PermissionRequest
from qwen_daemon.contract.responses import RESPONSES, SessionSummary
from qwen_daemon.contract.schema import Deriver, event_schemas
from qwen_daemon.contract.states import SessionState

#: component names kept from the hand-written document, which clients and tests refer to
NAMES: dict[Any, str] = {
    SessionSummary: "Session",
    SessionState: "State",
    PermissionRequest: "PendingPermission",
}


def derive() -> dict[str, Any]:
    """Every component schema, freshly derived from the contract."""
    deriver = Deriver(NAMES)
    schemas: dict[str, Any] = {"Id": deriver.schema(Id), "Answers": deriver.schema(AnswersShape)}
    for name, cls in {**RESPONSES, **BODIES}.items():
        deriver.component(cls, NAMES.get(cls, name))
    deriver.component(SessionState)
    events = event_schemas(deriver, EVENTS)
    return {**schemas, **deriver.components, **events}


@functools.cache
def schemas() -> dict[str, Any]:
    """The components, derived on the first request of the document rather than at import: the
    derivation walks every contract type, a cost no start should pay for a page seldom read."""
    return derive()
