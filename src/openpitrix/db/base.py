"""Column mixins shared by tables: ownership and timestamps.

Fields use `sa_type` (not `sa_column`) so each table gets its own Column objects.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from openpitrix.db.types import UTCDateTime, utcnow


class Owned(SQLModel):
    """Rows a user owns; `owner_path` scopes groups (identity issue)."""

    owner: str = Field(default="system", max_length=60)
    owner_path: str = Field(default=":system", max_length=300)


class Timestamps(SQLModel):
    """Created, last changed, and last status change."""

    create_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    update_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    status_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
