"""The test cloud itself: accounts, zones and VM instances in a SQLite file, outside the
processes that use it (the API, workers, the test), the way a cloud's API is.

Every call is one transaction, so concurrent tasks and the test's own checks see each other's
changes exactly as they would see a cloud's. Instances are named by (zone, cluster, node):
making one that exists returns it, which is what makes the provider's tasks idempotent."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (access_key TEXT PRIMARY KEY, secret_key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS zones (name TEXT PRIMARY KEY, runtime_id TEXT);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    zone TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    private_ip TEXT NOT NULL,
    status TEXT NOT NULL,
    cpu INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    volume_size INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    UNIQUE (zone, cluster_id, name)
);
"""

# Instance statuses: pending (booting) -> running; stopped; terminated (deleted, recoverable).
PENDING, RUNNING, STOPPED, TERMINATED = "pending", "running", "stopped", "terminated"


class CloudError(Exception):
    """The cloud refused a call (code as a cloud API would name it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Cloud:
    """One cloud, at `path`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: Path, *, accounts: dict[str, str], zones: Sequence[str] = ()) -> Cloud:
        cloud = cls(path)
        db = sqlite3.connect(path)
        try:
            db.executescript(SCHEMA)
        finally:
            db.close()
        with cloud._tx() as db:
            db.executemany("INSERT INTO accounts VALUES (?, ?)", list(accounts.items()))
            db.executemany("INSERT INTO zones (name) VALUES (?)", [(z,) for z in zones])
        return cloud

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if not self.path.is_file():
            raise CloudError("cloud_unreachable", f"no cloud at {self.path}")
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def _auth(self, db: sqlite3.Connection, access_key: str, secret_key: str) -> None:
        row = db.execute(
            "SELECT secret_key FROM accounts WHERE access_key = ?", (access_key,)
        ).fetchone()
        if row is None or row["secret_key"] != secret_key:
            raise CloudError("auth_failed", f"access key {access_key!r} was refused")

    def _zone(self, db: sqlite3.Connection, zone: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM zones WHERE name = ?", (zone,)).fetchone()
        if row is None:
            raise CloudError("no_such_zone", f"zone {zone!r} does not exist")
        return row

    # --- accounts and zones -------------------------------------------------------------------

    def authenticate(self, key: tuple[str, str]) -> None:
        with self._tx() as db:
            self._auth(db, *key)

    def zones(self, key: tuple[str, str]) -> list[str]:
        with self._tx() as db:
            self._auth(db, *key)
            return [r["name"] for r in db.execute("SELECT name FROM zones ORDER BY name")]

    def claim_zone(self, key: tuple[str, str], zone: str, runtime_id: str, create: bool) -> None:
        with self._tx() as db:
            self._auth(db, *key)
            row = db.execute("SELECT * FROM zones WHERE name = ?", (zone,)).fetchone()
            if row is None:
                if not create:
                    raise CloudError("no_such_zone", f"zone {zone!r} does not exist")
                db.execute("INSERT INTO zones VALUES (?, ?)", (zone, runtime_id))
                return
            if row["runtime_id"] not in (None, runtime_id):
                raise CloudError("zone_taken", f"zone {zone!r} belongs to another runtime")
            db.execute("UPDATE zones SET runtime_id = ? WHERE name = ?", (runtime_id, zone))

    def release_zone(self, key: tuple[str, str], zone: str, runtime_id: str) -> None:
        with self._tx() as db:
            self._auth(db, *key)
            db.execute(
                "UPDATE zones SET runtime_id = NULL WHERE name = ? AND runtime_id = ?",
                (zone, runtime_id),
            )

    # --- instances ----------------------------------------------------------------------------

    def run_instance(
        self, key: tuple[str, str], zone: str, cluster_id: str, spec: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Make the named instance, or find it made already; (instance, made now)."""
        with self._tx() as db:
            self._auth(db, *key)
            self._zone(db, zone)
            found = db.execute(
                "SELECT * FROM instances WHERE zone = ? AND cluster_id = ? AND name = ?",
                (zone, cluster_id, spec["name"]),
            ).fetchone()
            if found is not None:
                return dict(found), False
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM instances").fetchone()[0]
            instance = {
                "instance_id": f"i-{uuid.uuid4().hex[:8]}",
                "zone": zone,
                "cluster_id": cluster_id,
                "name": spec["name"],
                "role": spec["role"],
                "private_ip": f"10.0.{seq // 250}.{seq % 250 + 2}",
                "status": PENDING,
                "cpu": spec["cpu"],
                "memory": spec["memory"],
                "volume_size": spec["volume_size"],
                "seq": seq,
            }
            db.execute(
                "INSERT INTO instances VALUES (:instance_id, :zone, :cluster_id, :name, :role, "
                ":private_ip, :status, :cpu, :memory, :volume_size, :seq)",
                instance,
            )
            return instance, True

    def instances(self, key: tuple[str, str], zone: str, cluster_id: str) -> list[dict[str, Any]]:
        with self._tx() as db:
            self._auth(db, *key)
            return self._instances(db, zone, cluster_id)

    def _instances(
        self, db: sqlite3.Connection, zone: str, cluster_id: str
    ) -> list[dict[str, Any]]:
        rows = db.execute(
            "SELECT * FROM instances WHERE zone = ? AND cluster_id = ? ORDER BY role, seq",
            (zone, cluster_id),
        )
        return [dict(r) for r in rows]

    def set_status(
        self,
        key: tuple[str, str],
        zone: str,
        cluster_id: str,
        *,
        from_statuses: Sequence[str],
        to: str,
    ) -> int:
        """Move the cluster's instances in `from_statuses` to `to`; how many moved."""
        with self._tx() as db:
            self._auth(db, *key)
            marks = ", ".join("?" * len(from_statuses))
            moved = db.execute(
                f"UPDATE instances SET status = ? WHERE zone = ? AND cluster_id = ? "  # noqa: S608
                f"AND status IN ({marks})",
                (to, zone, cluster_id, *from_statuses),
            )
            return moved.rowcount

    def reshape(
        self, key: tuple[str, str], zone: str, cluster_id: str, role: str, sizes: dict[str, int]
    ) -> int:
        """Set cpu/memory/volume_size of the role's instances (a volume never shrinks)."""
        with self._tx() as db:
            self._auth(db, *key)
            count = 0
            for inst in self._instances(db, zone, cluster_id):
                if inst["role"] != role:
                    continue
                if sizes.get("volume_size", inst["volume_size"]) < inst["volume_size"]:
                    raise CloudError(
                        "volume_shrink",
                        f"volume of {inst['name']} is {inst['volume_size']} GiB; it cannot shrink",
                    )
                db.execute(
                    "UPDATE instances SET cpu = ?, memory = ?, volume_size = ? "
                    "WHERE instance_id = ?",
                    (
                        sizes.get("cpu", inst["cpu"]),
                        sizes.get("memory", inst["memory"]),
                        sizes.get("volume_size", inst["volume_size"]),
                        inst["instance_id"],
                    ),
                )
                count += 1
            return count

    def terminate(
        self, key: tuple[str, str], zone: str, cluster_id: str, names: Sequence[str] | None
    ) -> int:
        """Remove the named instances (all of the cluster's for None) for good; removing one
        that is gone already is no error."""
        with self._tx() as db:
            self._auth(db, *key)
            if names is None:
                gone = db.execute(
                    "DELETE FROM instances WHERE zone = ? AND cluster_id = ?", (zone, cluster_id)
                )
                return gone.rowcount
            count = 0
            for name in names:
                count += db.execute(
                    "DELETE FROM instances WHERE zone = ? AND cluster_id = ? AND name = ?",
                    (zone, cluster_id, name),
                ).rowcount
            return count
