"""The job list writes its rows straight to JSON (api.responses.page_response): a client gets
the very bytes JobRead would have written for the same jobs: an error made of two columns or
none, times with and without a fraction or not set, and documents of every JSON kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select
from sqlmodel import col

from openpitrix import ids
from openpitrix.db.engine import Database
from openpitrix.jobs.models import Job
from openpitrix.jobs.schemas import JobPage
from openpitrix.jobs.service import job_read
from tests.conftest import unique

ODD_TEXT = 'Ünïcødé "job" \\ with\ttabs\x01\x1f, </script> and 🚀'


async def test_the_job_list_is_byte_for_byte_what_job_read_writes(
    client: httpx.AsyncClient, db: Database
) -> None:
    resource_id = unique("res")
    whole = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    fraction = whole + timedelta(microseconds=120)
    common: dict[str, Any] = {
        "resource_kind": "cluster",
        "resource_id": resource_id,
        "owner": "usr-admin",
        "owner_path": ":usr-admin",
    }
    rows = [
        {
            **common,
            "job_id": ids.new_id(ids.JOB),
            "action": "create_cluster",
            "status": "failed",
            "executor": "task-manager-1",
            "attempts": 2,
            "progress": 40,
            "params": {"action": "create", "revision": 1, "params": {"n": 1.5, "ok": True}},
            "result": {"note": ODD_TEXT, "counts": [1, 2, None]},
            "error_code": "apply_failed",
            "error_message": ODD_TEXT,
            "create_time": whole,
            "status_time": fraction,
            "start_time": fraction,
            "end_time": whole,
        },
        {
            **common,
            "job_id": ids.new_id(ids.JOB),
            "action": "delete_cluster",
            "status": "pending",
            "create_time": fraction,
            "status_time": whole,
        },
    ]
    async with db.transaction() as session:
        await session.execute(insert(Job), rows)

    resp = await client.get("/v1/jobs", params={"resource_id": resource_id})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"

    async with db.read_session() as session:
        jobs = (
            await session.scalars(
                select(Job)
                .where(col(Job.resource_id) == resource_id)
                .order_by(col(Job.create_time).desc())
            )
        ).all()
    expected = JobPage(total_count=2, items=[job_read(j) for j in jobs]).model_dump_json()
    assert resp.content == expected.encode()
    # The comparison is not between two empties: the stored values came back.
    failed, pending = resp.json()["items"][1], resp.json()["items"][0]
    assert failed["error"] == {"code": "apply_failed", "message": ODD_TEXT}
    assert failed["status_time"] == "2026-01-02T03:04:05.000120Z"
    assert failed["create_time"] == "2026-01-02T03:04:05Z"
    assert failed["result"]["counts"] == [1, 2, None]
    assert pending["error"] is None and pending["start_time"] is None
    assert pending["tasks"] == []
