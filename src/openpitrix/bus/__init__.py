"""NATS JetStream bus: connection, embedded server, and the one declaration of the topology."""
