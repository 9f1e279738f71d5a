"""Typed contract → JSON Schema (draft 2020-12, the dialect OpenAPI 3.1 uses).

Why a deriver of our own rather than a library (pydantic, msgspec): the contract is plain
``TypedDict`` (see ``contract/__init__.py`` for the measured reason), and what it uses is small —
``TypedDict`` (``Required``/``NotRequired``), ``Literal``, ``list``, ``dict``, unions, ``None``,
``StrEnum``, ``Any`` and the constraint markers below, attached with ``typing.Annotated``. The same
markers drive the request validator (``contract/validate.py``), so what the document promises and
what the server refuses are one set of rules.

A ``TypedDict`` or ``StrEnum`` met while deriving becomes a named component (its class name, or the
name ``names`` gives it) referenced with ``$ref``; everything else is inlined.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, is_typeddict

JSON = dict[str, Any]
T = TypeVar("T")

# --- constraint markers (Annotated[...] metadata) --------------------------------------------------


class _Marker:
    """Base of the markers. Plain classes, not dataclasses: eight dataclasses cost ~3 ms of every
    start (their methods are generated with ``exec``). Equal only to a marker of the same class
    and value, because ``typing`` caches ``Annotated[...]`` by its metadata: were ``MinLength(1)``
    equal to ``MaxLength(1)`` (as two named tuples would be), one would stand for the other."""

    __slots__: tuple[str, ...] = ()

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, _Marker) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self._key()!r}"


class MinLength(_Marker):
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


class MaxLength(_Marker):
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


class Pattern(_Marker):
    """``regex`` is searched for (JSON Schema semantics: anchor it to match the whole string);
    ``says`` completes "<field> must ..." in the 400 a mismatch gets."""

    __slots__ = ("regex", "says")

    def __init__(self, regex: str, says: str = "") -> None:
        self.regex = regex
        self.says = says


class Minimum(_Marker):
    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value


class Maximum(_Marker):
    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value


class MaxItems(_Marker):
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


class Description(_Marker):
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class Ref(_Marker):
    """Stands for a component derived some other way (``Event``, a ``oneOf`` of the event
    schemas): the schema is a ``$ref`` to it; the validator checks only the base type."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


Marker = MinLength | MaxLength | Pattern | Minimum | Maximum | MaxItems | Description | Ref

# --- object-level options (set by the ``closed`` decorator) ----------------------------------------


def closed(cls: T | None = None, *, min_properties: int = 0) -> Any:
    """Mark a TypedDict as refusing unknown fields (``additionalProperties: false``), optionally
    with at least ``min_properties`` fields. A decorator because a TypedDict body may hold only
    annotations; the marks are plain class attributes the deriver and validator read."""

    def mark(target: Any) -> Any:
        target.__contract_closed__ = True
        target.__contract_min_properties__ = min_properties
        return target

    return mark if cls is None else mark(cls)


def is_closed(cls: Any) -> bool:
    return bool(getattr(cls, "__contract_closed__", False))


def min_properties(cls: Any) -> int:
    return int(getattr(cls, "__contract_min_properties__", 0))


# --- introspection shared with the validator --------------------------------------------------------


def unwrap(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """``Annotated[X, *markers]`` → ``(X, markers)``; anything else → ``(tp, ())``."""
    if get_origin(tp) is typing.Annotated:
        base, *extras = get_args(tp)
        inner, more = unwrap(base)
        return inner, (*more, *extras)
    return tp, ()


@functools.cache
def fields(cls: Any) -> tuple[Mapping[str, Any], frozenset[str]]:
    """A TypedDict's field types (markers kept) and its required keys, ``Required``/``NotRequired``
    stripped from the types. Read from the hints, not ``__required_keys__``: under
    ``from __future__ import annotations`` Python 3.11 cannot see ``NotRequired`` in a string.
    Cached: reading the hints evaluates every annotation (~50 µs a body), and the validator asks
    on every request."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[str, Any] = {}
    required = set()
    for name, hint in hints.items():
        needed = bool(getattr(cls, "__total__", True))
        while get_origin(hint) in (typing.Required, typing.NotRequired):
            needed = get_origin(hint) is typing.Required
            hint = get_args(hint)[0]
        out[name] = hint
        if needed:
            required.add(name)
    return MappingProxyType(out), frozenset(required)


def is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def is_strenum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, StrEnum)


_PRIMITIVES: dict[Any, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}


# --- the deriver ----------------------------------------------------------------------------------


class Deriver:
    """Derives schemas, collecting the named components they reference in :attr:`components`."""

    def __init__(self, names: Mapping[Any, str] | None = None, ref_prefix: str = "#/components/schemas/"):
        self.names: dict[Any, str] = dict(names or {})
        self.ref_prefix = ref_prefix
        self.components: dict[str, JSON] = {}
        self._owners: dict[str, Any] = {}

    def name_of(self, cls: Any) -> str:
        return self.names.get(cls, str(cls.__name__))

    def component(self, cls: Any, name: str | None = None) -> str:
        """Derive ``cls`` as a named component (once); returns its name."""
        name = name or self.name_of(cls)
        owner = self._owners.get(name)
        if owner is cls:
            return name
        if owner is not None:
            raise ValueError(f"two contract types want the component name {name!r}: {owner} and {cls}")
        self._owners[name] = cls
        self.components[name] = {}  # placeholder: a recursive reference finds the name taken
        self.components[name] = self.object(cls) if is_typeddict(cls) else self._enum(cls)
        return name

    def ref(self, cls: Any) -> JSON:
        return {"$ref": self.ref_prefix + self.component(cls)}

    def object(self, cls: Any, extra: Mapping[str, JSON] | None = None, first: tuple[str, ...] = ()) -> JSON:
        """A TypedDict as an object schema, inline; ``extra`` properties (required) go first."""
        hints, required = fields(cls)
        schema: JSON = {"type": "object"}
        doc = _doc(cls)
        if doc:
            schema["description"] = doc
        schema["required"] = [*first, *(name for name in hints if name in required)]
        if not schema["required"]:
            del schema["required"]
        schema["properties"] = {**(extra or {}), **{name: self.schema(tp) for name, tp in hints.items()}}
        if is_closed(cls):
            schema["additionalProperties"] = False
        if min_properties(cls):
            schema["minProperties"] = min_properties(cls)
        return schema

    def _enum(self, cls: Any) -> JSON:
        return {"enum": [member.value for member in cls]}

    def schema(self, tp: Any) -> JSON:
        """Any supported type as a schema (named types by ``$ref``)."""
        base, markers = unwrap(tp)
        refs = [m for m in markers if isinstance(m, Ref)]
        if refs:
            return {"$ref": self.ref_prefix + refs[0].name}
        schema = self._bare(base)
        for marker in markers:
            schema = {**schema, **_keyword(marker, base)}  # next to a $ref too: legal in 2020-12
        return schema

    def _bare(self, tp: Any) -> JSON:
        if tp is Any:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        if tp in _PRIMITIVES:
            return {"type": _PRIMITIVES[tp]}
        if is_typeddict(tp) or is_strenum(tp):
            return self.ref(tp)
        origin, args = get_origin(tp), get_args(tp)
        if origin is Literal:
            return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
        if origin is list:
            return {"type": "array", "items": self.schema(args[0])}
        if origin is dict:
            out: JSON = {"type": "object"}
            key, key_markers = unwrap(args[0])
            if key is not str:
                raise TypeError(f"a JSON object's keys are strings, not {key}")
            if key_markers:
                out["propertyNames"] = self.schema(args[0])
            value = self.schema(args[1])
            if value:
                out["additionalProperties"] = value
            return out
        if is_union(tp):
            branches = [self.schema(arg) for arg in args]
            if all(set(b) == {"type"} and isinstance(b["type"], str) for b in branches):
                return {"type": [b["type"] for b in branches]}
            return {"anyOf": branches}
        raise TypeError(f"the contract deriver does not know {tp!r}")


def _doc(cls: Any) -> str:
    """The first paragraph of a class's own docstring (TypedDict inherits dict's otherwise)."""
    doc = cls.__dict__.get("__doc__") or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _keyword(marker: Any, base: Any) -> JSON:
    if isinstance(marker, MinLength):
        return {"minLength": marker.value}
    if isinstance(marker, MaxLength):
        return {"maxLength": marker.value}
    if isinstance(marker, Pattern):
        return {"pattern": marker.regex}
    if isinstance(marker, Minimum):
        return {"minimum": marker.value}
    if isinstance(marker, Maximum):
        return {"maximum": marker.value}
    if isinstance(marker, MaxItems):
        return {"maxItems": marker.value}
    if isinstance(marker, Description):
        return {"description": marker.text}
    raise TypeError(f"unknown contract marker {marker!r} on {base!r}")


def camel(event_type: str) -> str:
    """``tool_call_update`` → ``ToolCallUpdate`` (event component names)."""
    return "".join(part.capitalize() for part in event_type.split("_"))


def event_schemas(deriver: Deriver, events: Mapping[str, Any]) -> dict[str, JSON]:
    """One schema per event type (``{seq, type: const, ts}`` + that type's fields), named
    ``<Type>Event``, and ``Event``: their ``oneOf``, discriminated by ``type``."""
    out: dict[str, JSON] = {}
    for event_type, cls in events.items():
        envelope: dict[str, JSON] = {
            "seq": {"type": "integer", "minimum": 1},
            "type": {"const": event_type},
            "ts": {"type": "string"},
        }
        schema = deriver.object(cls, envelope, first=("seq", "type", "ts"))
        out[f"{camel(event_type)}Event"] = schema
    refs = {t: deriver.ref_prefix + f"{camel(t)}Event" for t in events}
    out["Event"] = {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "type", "mapping": refs},
    }
    out["EventType"] = {"enum": list(events)}
    return out
