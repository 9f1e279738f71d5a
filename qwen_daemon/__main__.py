"""``python -m qwen_daemon`` is the same as the ``qwen-daemon`` command."""

from qwen_daemon.cli import main

raise SystemExit(main())
