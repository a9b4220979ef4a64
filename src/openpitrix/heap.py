"""Python's cyclic garbage collector in a long-running process (`Settings.gc`).

A gateway request or a job task makes thousands of short-lived objects (ORM rows, pydantic
models, SQL parameters), and with Python's default threshold (a young-generation collection
every 700 net allocations) collections ran many times per request, each older-generation one
walking everything the process holds: the app, its routes and models, SQLAlchemy's caches.
Measured with `bench/bench_reads.py` on PostgreSQL, `GET /v1/apps?limit=20`: p99 185-199 ms
with the defaults, 70 ms with the startup heap frozen and a 50,000 threshold (CPU per request
1,255-1,264 us -> 875-895 us)."""

from __future__ import annotations

import gc
import logging

from openpitrix.settings import GcSettings

log = logging.getLogger(__name__)


def settle(settings: GcSettings) -> None:
    """Once a process has started: raise the young generation's threshold and move what the
    process holds so far into the permanent generation, which collections no longer walk."""
    if settings.young_threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(settings.young_threshold, middle, old)
    if settings.freeze_at_start:
        gc.collect()
        gc.freeze()
    log.debug("gc thresholds %s, %d objects frozen", gc.get_threshold(), gc.get_freeze_count())
