"""The daemon's one contract: the names and shapes every other layer derives from.

Why a package of its own: the state and event vocabulary used to be spelled out by hand in the
session, the manager, the OpenAPI document and the browser. Everything here imports nothing from
the rest of ``qwen_daemon``, so any layer (agents, sessions, server, CLI, the generated
``protocol.js``) can depend on it without a cycle.
"""
