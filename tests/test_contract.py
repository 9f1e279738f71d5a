"""The contract and everything derived from it agree: a drift in one fails here.

- ``protocol.js`` is exactly what the generator makes from the contract today;
- the served OpenAPI document's components are exactly a fresh derivation, with one event schema
  per ``EVENTS`` entry (read from ``EVENTS`` itself, so a changed event flows through untouched);
- every event a real session emits (fake agent, the product's own server) fits the ``Event`` schema;
- the request validator and the body schemas accept and refuse the same bodies (hypothesis).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict, get_args, get_origin, is_typeddict

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen_daemon.contract import js
from qwen_daemon.contract.bodies import BODIES
from qwen_daemon.contract.events import EVENTS
from qwen_daemon.contract.schema import (
    Deriver,
    Description,
    Maximum,
    MaxLength,
    Minimum,
    MinLength,
    Pattern,
    camel,
    closed,
    event_schemas,
    fields,
    is_strenum,
    is_union,
    unwrap,
)
from qwen_daemon.contract.validate import ContractError, check
from qwen_daemon.server.openapi import document
from qwen_daemon.server.openapi_schemas import derive
from tests.support.daemon import Api, serve

pytestmark = pytest.mark.timeout(120)


# module level: the hints are strings (``from __future__``), resolved in this module
class Shape(StrEnum):
    ROUND = "round"


class Drawn(TypedDict):
    shape: Shape
    size: NotRequired[Annotated[int, Minimum(1)]]


class Colour(StrEnum):
    RED = "red"


@closed(min_properties=1)
class Toy(TypedDict):
    """A toy."""

    name: Annotated[str, MinLength(1), MaxLength(5), Pattern("^[a-z]+$", "be lower case")]
    colour: NotRequired[Colour | None]
    kind: NotRequired[Literal["a", "b"]]
    tags: NotRequired[list[str]]
    extra: NotRequired[dict[str, Any]]
    size: NotRequired[Annotated[float, Minimum(0), Maximum(9), Description("how big")]]


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**document(), "$ref": f"#/components/schemas/{name}"})


def test_protocol_js_is_a_fresh_generation() -> None:
    assert js.TARGET.read_text(encoding="utf-8") == js.generate(), (
        "protocol.js is stale: run `python -m qwen_daemon.contract.js`"
    )
    text = js.TARGET.read_text(encoding="utf-8")
    assert text.startswith("// @ts-check\n")
    for event_type in EVENTS:  # every event's name and typedef
        assert f'"{event_type}"' in text and f"}} {camel(event_type)}Event */" in text


def test_the_document_components_are_the_derived_schemas() -> None:
    schemas = document()["components"]["schemas"]
    assert schemas == derive()
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    event = schemas["Event"]
    assert list(event["discriminator"]["mapping"]) == list(EVENTS)
    for event_type, cls in EVENTS.items():
        one = schemas[f"{camel(event_type)}Event"]
        assert one["properties"]["type"] == {"const": event_type}
        assert set(one["properties"]) == {"seq", "type", "ts", *fields(cls)[0]}
        assert {"seq", "type", "ts", *fields(cls)[1]} == set(one["required"])


def test_every_body_and_response_in_the_paths_is_a_component() -> None:
    doc = document()
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"].rsplit("/", 1)[1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc["paths"])
    assert refs <= set(doc["components"]["schemas"])
    assert set(BODIES) <= refs, "a request body no route uses"


def test_a_new_event_type_flows_through_with_no_other_edit() -> None:
    schemas = event_schemas(Deriver(), {**EVENTS, "shape_drawn": Drawn})
    drawn = schemas["ShapeDrawnEvent"]
    assert drawn["required"] == ["seq", "type", "ts", "shape"]
    assert drawn["properties"]["size"] == {"type": "integer", "minimum": 1}
    assert schemas["Event"]["discriminator"]["mapping"]["shape_drawn"].endswith("/ShapeDrawnEvent")


def test_the_deriver_covers_the_types_the_contract_uses() -> None:
    deriver = Deriver()
    deriver.component(Toy)
    toy = deriver.components["Toy"]
    assert toy["description"] == "A toy." and toy["additionalProperties"] is False
    assert toy["minProperties"] == 1 and toy["required"] == ["name"]
    assert toy["properties"]["name"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 5,
        "pattern": "^[a-z]+$",
    }
    assert toy["properties"]["colour"] == {
        "anyOf": [{"$ref": "#/components/schemas/Colour"}, {"type": "null"}]
    }
    assert deriver.components["Colour"] == {"enum": ["red"]}
    assert toy["properties"]["kind"] == {"enum": ["a", "b"]}
    assert toy["properties"]["extra"] == {"type": "object"}
    assert toy["properties"]["size"] == {
        "type": "number",
        "minimum": 0,
        "maximum": 9,
        "description": "how big",
    }
    for bad, words in [
        ({}, "missing field 'name'"),
        ({"name": "ab", "x": 1}, "unknown field(s): x"),
        ({"name": "AB"}, "name must be lower case"),
        ({"name": "abcdef"}, "name is longer than 5"),
        ({"name": ""}, "name must not be empty"),
        ({"name": "a", "colour": "blue"}, "colour must be one of red or null"),
        ({"name": "a", "tags": ["x", 1]}, "tags.1 must be a string"),
        ({"name": "a", "size": 10}, "size must be at most 9"),
        ({"name": "a", "size": True}, "size must be a number"),
    ]:
        with pytest.raises(ContractError) as refused:
            check(Toy, bad)
        assert words in str(refused.value), (bad, str(refused.value))
    check(Toy, {"name": "a", "colour": None, "kind": "b", "tags": [], "extra": {"k": [1]}, "size": 9})


# --- the validator and the schemas agree --------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
EDGE_STRINGS = st.sampled_from(
    ["", " ", "\n", "x", "0", "00", "1", "-1", "abc-_9", "x" * 201, "a b", "\u0660"]
)


def values(tp: Any) -> st.SearchStrategy[Any]:
    """Values near the type's rules (either side of them) or anything at all."""
    base, markers = unwrap(tp)
    near: st.SearchStrategy[Any]
    if base is str:
        near = st.text(max_size=12) | EDGE_STRINGS
        for marker in markers:
            if isinstance(marker, MaxLength):
                near = near | st.sampled_from(["x" * marker.value, "x" * (marker.value + 1)])
    elif base in (int, float):
        near = st.integers(-3, 3) | st.floats(-2, 2) | st.sampled_from([10**6, 10**6 + 1, 10**400, True])
    elif base is bool:
        near = st.booleans()
    elif base is None or base is type(None):
        near = st.none()
    elif is_strenum(base):
        near = st.sampled_from([m.value for m in base])
    elif is_typeddict(base):
        hints, required = fields(base)
        near = st.fixed_dictionaries(
            {k: values(t) for k, t in hints.items() if k in required},
            optional={**{k: values(t) for k, t in hints.items() if k not in required}, "stray": JSON},
        )
    elif get_origin(base) is Literal:
        near = st.sampled_from(get_args(base))
    elif get_origin(base) is list:
        near = st.lists(values(get_args(base)[0]), max_size=3)
    elif get_origin(base) is dict:
        near = st.dictionaries(st.text(max_size=6) | EDGE_STRINGS, values(get_args(base)[1]), max_size=3)
    elif is_union(base):
        near = st.one_of(*(values(arg) for arg in get_args(base)))
    else:
        near = st.nothing()
    return near | JSON


@pytest.mark.parametrize("name", list(BODIES))
def test_the_validator_and_the_body_schema_agree(name: str) -> None:
    contract, schema = BODIES[name], validator(name)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(values(contract))
    def agree(body: Any) -> None:
        try:
            check(contract, body)
            accepted = True
        except ContractError:
            accepted = False
        assert accepted == schema.is_valid(body), (body, accepted)

    agree()


# --- every event of a real run fits the Event schema ----------------------------------------------

SCRIPT = "\n".join(
    [
        "think about it",
        "say hello there",
        "md " + '"# Title\\n\\n* one"',
        "plan read;write;test",
        "tool read Read notes",
        "permission Write notes.txt",
        "question Ship it?",
        "mode plan",
        'notify qwen/notify/custom {"x": 1}',
        "usage",
        "say done",
    ]
)


async def test_every_event_of_a_real_run_fits_the_event_schema(tmp_path: Path) -> None:
    async def body(api: Api, ws: Path) -> None:
        sid = (await api.call("POST", "/api/sessions", {"cwd": str(ws), "title": "contract"})).body["id"]
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": SCRIPT})
        for option in ("proceed_always", "proceed_once"):
            detail = await api.wait_state(sid, "awaiting_permission")
            rid = detail["pending_permissions"][0]["request_id"]
            answers = {"0": "Yes"} if detail["pending_permissions"][0].get("questions") else None
            reply = await api.call(
                "POST",
                f"/api/sessions/{sid}/permissions/{rid}",
                {"option_id": option, **({"answers": answers} if answers else {})},
            )
            assert reply.status == 200, reply.body
        await api.wait_state(sid, "idle")
        await api.call("PATCH", f"/api/sessions/{sid}", {"title": "renamed", "archived": True})
        await api.call("POST", f"/api/sessions/{sid}/prompt", {"text": "error the model is on fire"})
        await api.wait_state(sid, "idle")
        page = (await api.call("GET", f"/api/sessions/{sid}/events")).body
        validator("EventsPage").validate(page)
        event_schema = validator("Event")
        for event in page["events"]:
            assert event["type"] in EVENTS
            event_schema.validate(event)
        seen = {e["type"] for e in page["events"]}
        # most of the vocabulary, whatever its names are (they come from EVENTS, not from here)
        assert len(seen) >= 12, seen

    await serve(tmp_path, body)
