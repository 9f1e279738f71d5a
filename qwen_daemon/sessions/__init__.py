"""Sessions: the state machine, numbered events, and the manager that owns them."""
