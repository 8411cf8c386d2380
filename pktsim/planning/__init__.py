"""Flow plans: how messages are cut into subflows and pinned to paths; the planners."""
