"""Idempotency-Key: a retried POST answers what the first one did instead of acting twice."""

from openpitrix.idempotency.service import record, reserve

__all__ = ["record", "reserve"]
