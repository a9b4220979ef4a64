"""Jobs and tasks: every long operation, its state machine and its progress."""
