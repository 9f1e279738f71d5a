"""The OpenAPI document matches the live route table and real responses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tornado.routing import PathMatches

from qwen_daemon.server.openapi import document
from tests.support.daemon import Api, serve

pytestmark = pytest.mark.timeout(60)


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**document(), "$ref": f"#/components/schemas/{name}"})


def test_document_is_openapi_31_with_valid_schemas() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


async def test_every_route_is_documented_and_every_documented_path_exists(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        documented = set(document()["paths"])
        routes = {
            rule.matcher.regex.pattern.rstrip("$")
            for rule in api.daemon.app.wildcard_router.rules
            if isinstance(rule.matcher, PathMatches)
            and rule.matcher.regex.pattern.startswith(("/api", "/health"))
        }
        as_templates = {re.sub(r"\(\[A-Za-z0-9_-\]\{1,64\}\)", "{id}", r).replace("\\", "") for r in routes}
        normalized = {re.sub(r"\{[a-z_]+\}", "{id}", p) for p in documented}
        assert as_templates == normalized

    await serve(tmp_path, body)


async def test_real_responses_match_their_schemas(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        validator("Health").validate((await api.call("GET", "/health")).body)
        created = await api.call("POST", "/api/sessions", {"cwd": str(ws)})
        validator("SessionDetail").validate(created.body)
        sid = created.body["id"]
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "permission Write x\nsay done"})
        detail = await api.wait_state(sid, "awaiting_permission")
        validator("SessionDetail").validate(detail)
        rid = detail["pending_permissions"][0]["request_id"]
        await api.call("POST", f"/api/sessions/{sid}/permissions/{rid}", {"option_id": "proceed_once"})
        await api.wait_state(sid, "idle")
        listed = (await api.call("GET", "/api/sessions")).body
        documented = set(document()["components"]["schemas"]["Session"]["properties"])
        for session in listed["sessions"]:
            validator("Session").validate(session)
            assert set(session) == documented, "a session field is missing from the OpenAPI schema"
        events = (await api.call("GET", f"/api/sessions/{sid}/events")).body
        for event in events["events"]:
            validator("Event").validate(event)
        for reply in (
            await api.call("GET", "/api/sessions/nope"),
            await api.call("POST", "/api/sessions", {"cwd": 3}),
            await api.call("GET", "/api/sessions", token=None),
        ):
            validator("Error").validate(reply.body)
        served: dict[str, Any] = (await api.call("GET", "/api/openapi.json")).body
        assert served == document()

    await serve(tmp_path, body)
