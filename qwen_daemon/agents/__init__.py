"""Agent hosting: ACP subprocesses, translation of their updates, finding the agent."""
