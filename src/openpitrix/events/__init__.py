"""Events: what happened to jobs, tasks and resources, published via the outbox, served as SSE."""
