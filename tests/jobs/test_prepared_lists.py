"""The job list runs statements prepared once per shape (db.reads.prepare): every caller sees
only the jobs their scope covers, and every filter value is the request's own."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from openpitrix import ids
from openpitrix.db.engine import Database
from openpitrix.db.listing import ListQuery
from openpitrix.iam.access import Caller, Op
from openpitrix.iam.schemas import Role
from openpitrix.jobs import service
from openpitrix.jobs.models import Job
from tests.conftest import unique


def _job(owner: str, owner_path: str, action: str, status: str) -> dict[str, Any]:
    return {
        "job_id": ids.new_id(ids.JOB),
        "action": action,
        "resource_kind": "cluster",
        "resource_id": ids.new_id(ids.JOB),
        "owner": owner,
        "owner_path": owner_path,
        "status": status,
    }


async def test_each_caller_sees_their_own_jobs_through_one_prepared_statement(
    db: Database,
) -> None:
    first, second = f"usr-{unique('o')}", f"usr-{unique('o')}"
    rows = [
        _job(first, f":{first}", "deploy", "pending"),
        _job(first, f":{first}", "delete", "successful"),
        _job(second, f":{second}", "deploy", "failed"),
    ]
    async with db.transaction() as session:
        await session.execute(insert(Job), rows)
    expected = {
        owner: sorted(r["job_id"] for r in rows if r["owner"] == owner) for owner in (first, second)
    }
    for _ in range(2):  # the second round runs on the statements the first one prepared
        for owner, job_ids in expected.items():
            access = Caller(user_id=owner, role=Role.DEVELOPER).access(Op.JOB_READ)
            total, items = await service.list_jobs(
                db.reads, ListQuery(limit=50, sort_key="create_time"), access
            )
            assert total == len(job_ids)
            assert sorted(j["job_id"] for j in items) == job_ids
            assert {j["owner"] for j in items} == {owner}


async def test_group_callers_and_filter_values_are_bound_per_request(db: Database) -> None:
    groups = [unique("acme"), unique("globex")]
    rows: list[dict[str, Any]] = []
    for group in groups:
        user = f"usr-{unique('o')}"
        rows += [
            _job(user, f"{group}:{user}", "deploy", "pending"),
            _job(user, f"{group}/team:{user}", "delete", "working"),
            _job(user, f"{group}:{user}", "upgrade", "failed"),
        ]
    async with db.transaction() as session:
        await session.execute(insert(Job), rows)
    for _ in range(2):
        for group in groups:
            access = Caller(user_id=f"usr-{unique('i')}", role=Role.ISV, group_path=group).access(
                Op.JOB_READ
            )
            mine = [r for r in rows if r["owner_path"].startswith((f"{group}:", f"{group}/"))]
            for status, action in ((["pending", "working"], []), ([], ["upgrade"])):
                total, items = await service.list_jobs(
                    db.reads, ListQuery(limit=50), access, status=status, action=action
                )
                wanted = sorted(
                    r["job_id"]
                    for r in mine
                    if (not status or r["status"] in status)
                    and (not action or r["action"] in action)
                )
                assert total == len(wanted)
                assert sorted(j["job_id"] for j in items) == wanted
