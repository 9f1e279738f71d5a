"""OS supervisor integration: running under systemd or launchd.

``activation`` takes over the listening sockets systemd passes to ``start --foreground``.
"""
