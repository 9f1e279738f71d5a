"""The environment variables a supervisor (systemd, launchd) hands the daemon about itself, named once.

They describe the daemon's own relationship with its supervisor: where to report readiness and
watchdog pings (``NOTIFY_SOCKET``, ``WATCHDOG_*``), which descriptors are its listening sockets
(``LISTEN_*``), which unit run and journal stream it is (``INVOCATION_ID``, ``JOURNAL_STREAM``,
``SYSTEMD_EXEC_PID``, ``MANAGERPID``), the cgroup pressure file it may watch
(``MEMORY_PRESSURE_*``). An agent inheriting them could tell systemd the service is ready or
stopping, ping its watchdog, adopt descriptors that are not its own, or log as if it were the
daemon; so an agent never gets any of them (:func:`without_supervisor`).

Three readers once kept three lists (the sd_notify setup, socket activation, the agent's
environment) and they had drifted: the agent's list lacked the unit's identity variables. The
slices below are for the two readers that consume their part once and drop it (as
``sd_listen_fds(unset_environment=1)`` does); the agent's environment drops them all.
"""

from __future__ import annotations

from collections.abc import Mapping

#: sd_notify: the socket to report READY/STOPPING to, and the watchdog's period and process
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
#: socket activation (``sd_listen_fds``): the passed descriptors, whom they are for, their names
LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
#: every variable that is the supervisor's word to the daemon, never to an agent
SUPERVISOR_VARIABLES = (
    *NOTIFY_VARIABLES,
    *LISTEN_VARIABLES,
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "SYSTEMD_EXEC_PID",
    "MANAGERPID",
    "MEMORY_PRESSURE_WATCH",
    "MEMORY_PRESSURE_WRITE",
)


def without_supervisor(base: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` minus the supervisor's variables, then ``extra`` (an agent's own settings) on top."""
    env = {k: v for k, v in base.items() if k not in SUPERVISOR_VARIABLES}
    env.update(extra or {})
    return env
