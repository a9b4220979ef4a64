"""Runtime tables: credentials (encrypted content), runtimes, and runtime labels."""

from __future__ import annotations

from sqlalchemy import Index, Text, text
from sqlmodel import Field, SQLModel

from openpitrix.db.base import Owned, Timestamps
from openpitrix.db.types import JSONType

LIVE = "status != 'deleted'"


class RuntimeCredential(Owned, Timestamps, table=True):
    __tablename__ = "runtime_credentials"
    __table_args__ = (Index("ix_runtime_credentials_owner", "owner"),)

    credential_id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=100)
    description: str = Field(default="", max_length=2000)
    provider: str = Field(max_length=30, index=True)
    endpoint_url: str = Field(default="", max_length=2000)
    # Fernet ciphertext of {"content": ...}; never leaves the service layer in clear.
    content_secret: str = Field(sa_type=Text)
    status: str = Field(default="active", max_length=16, index=True)


class Runtime(Owned, Timestamps, table=True):
    __tablename__ = "runtimes"
    __table_args__ = (
        Index("ix_runtimes_owner", "owner"),
        Index("ix_runtimes_credential", "credential_id"),
        # One live runtime per exclusive zone of a credential's endpoint: the provider also
        # marks the zone (a namespace's label), which catches two credentials for one cluster.
        # Shared zones (a cloud's regions) have no claim (NULL), so any number of runtimes.
        Index(
            "uq_runtimes_live_zone_claim",
            "provider",
            "endpoint_url",
            "zone_claim",
            unique=True,
            sqlite_where=text(LIVE),
            postgresql_where=text(LIVE),
        ),
    )

    runtime_id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=100)
    description: str = Field(default="", max_length=2000)
    provider: str = Field(max_length=30, index=True)
    zone: str = Field(max_length=253)
    # The zone when the provider's zones are exclusive, else None: what the unique index holds.
    zone_claim: str | None = Field(default=None, max_length=253)
    credential_id: str = Field(max_length=40, foreign_key="runtime_credentials.credential_id")
    # Copied from the credential when the runtime is made: the zone's uniqueness is per endpoint.
    endpoint_url: str = Field(default="", max_length=2000)
    labels: list[dict[str, str]] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    status: str = Field(default="active", max_length=16, index=True)


class RuntimeLabel(SQLModel, table=True):
    """One label of a runtime, in a side table so label filters and eligibility are SQL."""

    __tablename__ = "runtime_labels"
    __table_args__ = (Index("ix_runtime_labels_lookup", "key", "value"),)

    runtime_id: str = Field(
        primary_key=True, max_length=40, foreign_key="runtimes.runtime_id", ondelete="CASCADE"
    )
    position: int = Field(primary_key=True)
    key: str = Field(max_length=200)
    value: str = Field(max_length=500)
