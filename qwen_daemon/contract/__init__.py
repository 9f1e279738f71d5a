"""The daemon's one contract: the names and shapes every other layer derives from.

Why a package of its own: the state and event vocabulary used to be spelled out by hand in the
session, the manager, the OpenAPI document and the browser. Everything here imports nothing from
the rest of ``qwen_daemon``, so any layer (agents, sessions, server, CLI, the generated
``protocol.js``) can depend on it without a cycle.

- ``states.py``, ``events.py``: the session states and every event's fields;
- ``bodies.py``, ``responses.py``: every request body (with its input rules) and response;
- ``schema.py``: the types → JSON Schema (the OpenAPI components, ``server/openapi_schemas.py``);
- ``validate.py``: a parsed body checked against its type (the server's request validation);
- ``js.py``: ``python -m qwen_daemon.contract.js`` writes ``web/static/js/protocol.js``.

Why ``TypedDict`` rather than ``msgspec.Struct`` (measured with ``bench/contract_cost.py``: three
runs on the shared 2-core machine at load average 14, hence the ranges): building a typical relay
event from an ACP update and serializing it, per event —

==================== ============ ============= ===================
event                dict + json  Struct +      dict + msgspec
                     (today)      msgspec       encoder
==================== ============ ============= ===================
agent_message_chunk  9-15 µs      4.1-5.9 µs    1.1-4.3 µs
tool_call_update     20-36 µs     8.7-12 µs     7.0-9.8 µs
==================== ============ ============= ===================

What costs is the encoder, not the container: the same plain dict through msgspec's encoder is
about as cheap as a Struct or cheaper (a Struct must be built from the translated fields first).
A ``TypedDict`` is a plain dict at run time, so the contract costs the relay nothing and needs
no dependency; if the encoder ever becomes the bottleneck (at ~20,000 events/s, ~50 µs an event,
it is a tenth to a fifth of the budget) it can be swapped under the same types.
"""
