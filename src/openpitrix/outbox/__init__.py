"""Transactional outbox: messages written with the state change, published by a relay."""
