"""qwen-daemon: keeps ACP coding-agent sessions alive in the background."""

__version__ = "0.1.0"
