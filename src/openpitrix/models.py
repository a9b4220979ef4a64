"""Every table model, so `SQLModel.metadata` is complete (alembic, tests); db/ imports none."""

from sqlmodel import SQLModel

from openpitrix.apps.models import App, AppVersion
from openpitrix.clusters.models import Cluster, ClusterNode, ClusterRelease, ClusterRole
from openpitrix.iam.models import ApiClient, RefreshToken, User
from openpitrix.idempotency.models import IdempotentRequest
from openpitrix.jobs.models import Job, Task
from openpitrix.outbox.models import OutboxMessage
from openpitrix.repos.models import Repo, RepoLabel
from openpitrix.runtimes.models import Runtime, RuntimeCredential, RuntimeLabel

metadata = SQLModel.metadata

__all__ = [
    "ApiClient",
    "App",
    "AppVersion",
    "Cluster",
    "ClusterNode",
    "ClusterRelease",
    "ClusterRole",
    "IdempotentRequest",
    "Job",
    "OutboxMessage",
    "RefreshToken",
    "Repo",
    "RepoLabel",
    "Runtime",
    "RuntimeCredential",
    "RuntimeLabel",
    "Task",
    "User",
    "metadata",
]
