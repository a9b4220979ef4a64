"""The remembered answers of requests sent with an Idempotency-Key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text
from sqlmodel import Field, SQLModel

from openpitrix.db.types import UTCDateTime, utcnow


class IdempotentRequest(SQLModel, table=True):
    """Keys are per caller: two users may pick the same key without seeing each other."""

    __tablename__ = "idempotent_requests"

    owner: str = Field(primary_key=True, max_length=60)
    key: str = Field(primary_key=True, max_length=200)
    route: str = Field(max_length=300)
    request_hash: str = Field(max_length=64)
    status_code: int = Field(default=0)
    response: str = Field(default="", sa_type=Text)
    create_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
