"""Which agent command to run.

The default agent is Qwen Code. It is looked for, in order: the configured command
(``--agent-cmd`` / ``QWEN_DAEMON_AGENT_CMD`` / config file), the pinned copy ``make install`` puts
inside the virtualenv (``<sys.prefix>/qwen-code``), then ``qwen`` on PATH. Qwen Code's npm launcher
re-executes itself twice (three node processes, twice the memory, children orphaned by a SIGTERM to
the top one), so wherever its ``cli.js`` can be found it is launched directly as one process with
``QWEN_CODE_NO_RELAUNCH=true node cli.js --acp``.

``path`` (default: this process's PATH) is where programs are looked for: ``service install`` asks
with the PATH the unit will carry, so it refuses a unit whose daemon could not find its agent.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from qwen_daemon.config import BUILTIN_AGENT, AgentSpec

QWEN_PACKAGE = "@qwen-code/qwen-code"
QWEN_ENV = {"QWEN_CODE_NO_RELAUNCH": "true"}


@dataclass(frozen=True)
class AgentCommand:
    """A resolved agent: the argv to exec and the extra environment it wants."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    source: str = "configured"
    #: it is Qwen Code (found as such, or a configured command that runs it): its credential
    #: rules and hint apply (:mod:`qwen_daemon.agents.credentials`)
    qwen_code: bool = False


class AgentNotFound(Exception):
    """No agent command could be found; the message says where we looked."""


def pinned_qwen_cli(prefix: Path | None = None) -> Path:
    """Where ``make install`` puts the pinned Qwen Code's entry script."""
    base = Path(sys.prefix) if prefix is None else prefix
    return base / "qwen-code" / "node_modules" / QWEN_PACKAGE / "cli.js"


def _qwen_cli_behind(launcher: str) -> Path | None:
    """The ``cli.js`` an npm-installed ``qwen`` launcher points at, if it is one."""
    real = Path(os.path.realpath(launcher))
    return real if real.name == "cli.js" and real.is_file() else None


def _node_command(cli: Path, path: str | None) -> AgentCommand | None:
    node = shutil.which("node", path=path)
    if node is None:
        return None
    return AgentCommand((node, str(cli), "--acp"), dict(QWEN_ENV), source=str(cli), qwen_code=True)


def runs_qwen_code(argv: tuple[str, ...]) -> bool:
    """Does a configured command start Qwen Code (its ``qwen`` launcher or its package's script)?"""
    return any(Path(word).name == "qwen" or QWEN_PACKAGE in word for word in argv[:3])


def resolve_agent(
    configured: tuple[str, ...] | None, prefix: Path | None = None, path: str | None = None
) -> AgentCommand:
    """Find the agent to run, or raise AgentNotFound naming every place tried."""
    if configured:
        exe = configured[0]
        if os.sep not in exe and shutil.which(exe, path=path) is None:
            raise AgentNotFound(f"configured agent command {exe!r} was not found on PATH")
        if os.sep in exe and not os.access(exe, os.X_OK):
            raise AgentNotFound(f"configured agent command {exe!r} does not exist or is not executable")
        return AgentCommand(configured, qwen_code=runs_qwen_code(configured))
    tried = []
    cli = pinned_qwen_cli(prefix)
    tried.append(str(cli))
    if cli.is_file():
        found = _node_command(cli, path)
        if found is not None:
            return found
        tried.append("node on PATH (needed to run it)")
    launcher = shutil.which("qwen", path=path)
    tried.append("qwen on PATH")
    if launcher is not None:
        behind = _qwen_cli_behind(launcher)
        direct = _node_command(behind, path) if behind is not None else None
        return direct or AgentCommand((launcher, "--acp"), dict(QWEN_ENV), source=launcher, qwen_code=True)
    raise AgentNotFound(
        "Qwen Code was not found (looked at: " + ", ".join(tried) + "). Run `make install`, "
        f"`npm install -g {QWEN_PACKAGE}`, or pass --agent-cmd."
    )


def resolve_spec(spec: AgentSpec, prefix: Path | None = None, path: str | None = None) -> AgentCommand:
    """Resolve a named agent: the built-in ``qwen`` as above, any other its configured command."""
    if spec.name == BUILTIN_AGENT:
        found = resolve_agent(spec.command, prefix, path)
        if spec.command:  # a configured Qwen Code still must not relaunch itself
            found = AgentCommand(found.argv, {**QWEN_ENV, **spec.env}, found.source, found.qwen_code)
        return found
    if not spec.command:
        raise AgentNotFound(f"agent {spec.name!r} has no command")
    found = resolve_agent(spec.command, prefix, path)
    return AgentCommand(found.argv, dict(spec.env), f"agents.{spec.name}", found.qwen_code)
