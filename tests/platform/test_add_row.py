"""`db.rows.add_row` writes the row the model's constructor would (its defaults filled in the
same way), in one statement per table as the transaction commits, parents before children;
and nothing when the transaction rolls back, even one that ran no statement before it. On
the real database."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from openpitrix import ids
from openpitrix.clusters.models import Cluster, ClusterRelease
from openpitrix.db.engine import Database
from openpitrix.db.rows import add_row
from openpitrix.jobs.models import Job

SKIP = {"job_id", "create_time", "update_time", "status_time"}


def _given(job_id: str) -> dict[str, object]:
    return {
        "job_id": job_id,
        "action": "create_cluster",
        "resource_kind": "cluster",
        "resource_id": ids.new_id(ids.CLUSTER),
        "owner": "usr-rows",
        "owner_path": ":usr-rows",
        "params": {"action": "create", "revision": 1},
    }


async def test_a_row_added_at_commit_equals_the_one_its_model_would_write(db: Database) -> None:
    by_row, by_model = ids.new_id(ids.JOB), ids.new_id(ids.JOB)
    async with db.session() as session:
        add_row(session, Job, **_given(by_row))
        session.add(Job(**_given(by_model)))
        await session.commit()
    async with db.session() as session:
        rows = {
            job.job_id: job
            for job in (
                await session.scalars(select(Job).where(col(Job.job_id).in_([by_row, by_model])))
            ).all()
        }
    assert set(rows) == {by_row, by_model}
    written, constructed = rows[by_row].model_dump(), rows[by_model].model_dump()
    assert {k: v for k, v in written.items() if k not in SKIP | {"resource_id"}} == {
        k: v for k, v in constructed.items() if k not in SKIP | {"resource_id"}
    }
    assert written["status"] == "pending" and written["progress"] == 0
    assert written["create_time"] is not None


async def test_children_after_parents_in_one_commit_and_nothing_after_a_rollback(
    db: Database,
) -> None:
    cluster_id, kept_job = ids.new_id(ids.CLUSTER), ids.new_id(ids.JOB)
    async with db.session() as session:
        add_row(
            session,
            Cluster,
            cluster_id=cluster_id,
            name="rows",
            app_id="app-rows",
            version_id="ver-rows",
            runtime_id="rt-rows",
            provider="kubernetes",
            zone="z",
            job_id=kept_job,
        )
        add_row(session, ClusterRelease, cluster_id=cluster_id, revision=1, version_id="ver-rows")
        await session.commit()
    dropped = ids.new_id(ids.JOB)
    async with db.session() as session:
        add_row(session, Job, **_given(dropped))
        await session.rollback()
        await session.commit()  # the rolled-back row is not written by a later commit
    async with db.session() as session:
        cluster = await session.get(Cluster, cluster_id)
        release = await session.get(ClusterRelease, (cluster_id, 1))
        assert await session.get(Job, dropped) is None
    assert cluster is not None and cluster.job_id == kept_job and cluster.values == {}
    assert release is not None and release.manifest == "[]"
