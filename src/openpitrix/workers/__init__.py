"""Manager workers: consume commands from JetStream with bounded concurrency and drain on SIGTERM."""
