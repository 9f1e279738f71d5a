"""Check a parsed JSON value against a contract type: the server's request validation.

Why it walks the types rather than the JSON Schema: the types carry the sentences a refusal needs
(``Pattern.says``), and they are what the deriver (``contract/schema.py``) reads too, so the schema
in the OpenAPI document and this check cannot disagree — ``tests/test_contract.py`` feeds both the
same generated bodies to prove it. A refusal is :class:`ContractError` naming the field
(``keys.auth``, ``answers.0``); the server turns it into its ``400 bad_request``.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar, cast, get_args, get_origin, is_typeddict

from qwen_daemon.contract.schema import (
    Description,
    Maximum,
    MaxItems,
    MaxLength,
    Minimum,
    MinLength,
    Pattern,
    Ref,
    fields,
    is_closed,
    is_strenum,
    is_union,
    min_properties,
    unwrap,
)

T = TypeVar("T")


class ContractError(ValueError):
    """A value that does not fit its contract type; the message names the field and the rule."""


def check(tp: type[T], value: Any) -> T:
    """``value`` if it fits ``tp`` (a TypedDict body, usually), else :class:`ContractError`."""
    _check(tp, value, "")
    return cast(T, value)


def _name(path: str) -> str:
    return path or "the body"


def _check(tp: Any, value: Any, path: str) -> None:
    base, markers = unwrap(tp)
    _check_base(base, value, path)
    for marker in markers:
        _check_marker(marker, value, path)


def _check_base(tp: Any, value: Any, path: str) -> None:
    if tp is Any:
        return
    if not _fits(tp, value):
        raise ContractError(f"{_name(path)} must be {describe(tp)}")
    if is_typeddict(tp):
        _check_object(tp, value, path)
        return
    origin, args = get_origin(tp), get_args(tp)
    if origin is list:
        for index, item in enumerate(value):
            _check(args[0], item, f"{path}.{index}" if path else str(index))
    elif origin is dict:
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            _check(args[0], key, f"{path} key {key!r}" if path else f"key {key!r}")
            _check(args[1], item, where)
    elif is_union(tp):
        # only the branches of the value's JSON type can explain a refusal: the first one's does
        errors = []
        for arg in (a for a in args if _fits(unwrap(a)[0], value)):
            try:
                _check(arg, value, path)
                return
            except ContractError as exc:
                errors.append(exc)
        raise errors[0]


def _check_object(cls: Any, value: dict[str, Any], path: str) -> None:
    hints, required = fields(cls)
    prefix = f"{path}." if path else ""
    if is_closed(cls):
        unknown = sorted(set(value) - set(hints))
        if unknown:
            known = ", ".join(hints)
            raise ContractError(
                f"unknown field(s): {', '.join(prefix + u for u in unknown)}; the fields are {known}"
            )
    for name in hints:
        if name in required and name not in value:
            raise ContractError(f"missing field {prefix + name!r}")
    if len(value) < min_properties(cls):
        least = min_properties(cls)
        raise ContractError(f"give at least {'one' if least == 1 else least} of: {', '.join(hints)}")
    for name, hint in hints.items():
        if name in value:
            _check(hint, value[name], prefix + name)


def _fits(tp: Any, value: Any) -> bool:
    """The JSON type alone (what ``type``/``enum``/``const`` say)."""
    if tp is None or tp is type(None):
        return value is None
    if tp is str:
        return isinstance(value, str)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if is_typeddict(tp):
        return isinstance(value, dict)
    if is_strenum(tp):
        return isinstance(value, str) and value in {m.value for m in tp}
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    if is_union(tp):
        return any(_fits(unwrap(arg)[0], value) for arg in args)
    raise TypeError(f"the contract validator does not know {tp!r}")


def describe(tp: Any) -> str:
    """What a value of ``tp`` is, in words: "a string", "a string or a list of strings"."""
    base, _ = unwrap(tp)
    if base is None or base is type(None):
        return "null"
    words = {str: "a string", bool: "true or false", int: "a whole number", float: "a number"}
    if base in words:
        return words[base]
    if is_typeddict(base) or get_origin(base) is dict:
        return "an object"
    if is_strenum(base):
        return "one of " + ", ".join(m.value for m in base)
    origin, args = get_origin(base), get_args(base)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is list:
        item = describe(args[0])
        return "a list of " + (item.removeprefix("a ") + "s" if item.startswith("a ") else item)
    if is_union(base):
        return " or ".join(describe(arg) for arg in args)
    return "valid"


def _check_marker(marker: Any, value: Any, path: str) -> None:
    name = _name(path)
    if isinstance(marker, MinLength) and isinstance(value, str) and len(value) < marker.value:
        raise ContractError(
            f"{name} must not be empty"
            if marker.value == 1
            else f"{name} is shorter than {marker.value} characters"
        )
    if isinstance(marker, MaxLength) and isinstance(value, str) and len(value) > marker.value:
        raise ContractError(f"{name} is longer than {marker.value} characters")
    if isinstance(marker, Pattern) and isinstance(value, str) and not re.search(marker.regex, value):
        raise ContractError(f"{name} must {marker.says or f'match {marker.regex}'}")
    if isinstance(marker, Minimum) and _number(value) and value < marker.value:
        raise ContractError(f"{name} must be at least {_figure(marker.value)}")
    if isinstance(marker, Maximum) and _number(value) and value > marker.value:
        raise ContractError(f"{name} must be at most {_figure(marker.value)}")
    if isinstance(marker, MaxItems) and isinstance(value, list) and len(value) > marker.value:
        raise ContractError(f"{name} holds more than {marker.value} items")
    if not isinstance(
        marker, MinLength | MaxLength | Pattern | Minimum | Maximum | MaxItems | Description | Ref
    ):
        raise TypeError(f"unknown contract marker {marker!r}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _figure(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
