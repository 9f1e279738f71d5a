"""OS supervisor backends: handing the daemon to systemd or launchd, and who owns it now.

One owner: when a supervisor knows our service, the CLI's ``start``/``stop``/``restart`` go
through it (``systemctl --user`` / ``launchctl``) and never start a second, self-daemonized copy
beside it; otherwise the daemon is standalone and the CLI daemonizes it itself.

Modules: ``base`` (the interface and shared helpers), ``owner`` (which backend owns the daemon),
``templates`` (rendering the shipped unit, socket and plist), ``systemd`` and ``launchd`` (the two
backends), ``activation`` (sockets passed by systemd). The commands that drive them, and print what
they report, are the CLI's (:mod:`qwen_daemon.cli.service`): nothing here writes to the terminal.

Empty on purpose: the backends are imported on first use (``start --foreground`` needs only
``activation``), and a package that imported its own submodules would sit in a cycle with them.
"""
