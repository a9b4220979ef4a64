"""Manager workers: consume commands with bounded concurrency, drain on SIGTERM."""
