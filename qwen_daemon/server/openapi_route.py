"""``GET /api/openapi.json``: the route alone, apart from the document it serves.

Why apart: the document (``openapi.py``, with the paths and the schemas derived from the contract)
is read by a client now and then, never on the way to serving; importing it only on the first
request keeps its construction and its ~100 KiB out of every start and every idle daemon.
"""

from __future__ import annotations

from qwen_daemon.server.base import BaseHandler


class OpenApiHandler(BaseHandler):
    def get(self) -> None:
        from qwen_daemon.server.openapi import document

        self.write_json(document())


routes = [(r"/api/openapi.json", OpenApiHandler)]
