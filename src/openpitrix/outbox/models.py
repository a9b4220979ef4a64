"""Outbox table: one row per message to publish; `key` names what its order matters for (a job
or a resource), `seq` orders a key's rows, `parked_at` sets aside a row that can never be
published."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel

from openpitrix.db.types import JSONType, UTCDateTime, utcnow


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unsent", "sent_at", "seq"),)

    seq: int | None = Field(default=None, primary_key=True)
    msg_id: str = Field(max_length=40, unique=True)
    subject: str = Field(max_length=300)
    # Rows of one key are published in `seq` order, one after the other; rows of different keys
    # go out side by side (outbox.keys says how a key is derived).
    key: str = Field(default="", max_length=300)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    # Set when publishing failed for good (e.g. over the server's payload limit): the relay skips
    # the row so it no longer holds back every later message; `error` says why.
    parked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    error: str | None = Field(default=None, sa_column=Column(Text))
