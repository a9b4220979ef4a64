"""Fixtures for end-to-end tests through real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.procs import Processes


@pytest.fixture
async def procs(
    database_url: str, nats_url: str, tmp_path: Path, admin_headers: dict[str, str]
) -> AsyncIterator[Processes]:
    """Starts processes on the session's database and NATS; kills them all at teardown."""
    async with Processes(database_url, nats_url, tmp_path, admin_headers) as started:
        yield started
