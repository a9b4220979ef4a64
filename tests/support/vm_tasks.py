"""A VM provider's tasks run directly, as a task worker runs them: each task's TaskRun built as
the cluster job adapter builds it, the release rendered by `render_spec` and the state found
by `survey` handed to the tasks after them, every progress report kept."""

from __future__ import annotations

from typing import Any

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import ClusterState, Credential, Provider, Release, TaskRun


class TaskRunner:
    """Runs one cluster's tasks on one provider, credential and zone."""

    def __init__(
        self,
        provider: Provider,
        credential: Credential,
        package: bytes,
        *,
        cluster_id: str,
        zone: str,
        policy: AddressPolicy,
    ) -> None:
        self.provider = provider
        self.credential = credential
        self.package = package
        self.cluster_id = cluster_id
        self.zone = zone
        self.policy = policy
        self.manifest: list[dict[str, Any]] | None = None
        self.state = ClusterState()
        self.reports: list[tuple[str, int | None, dict[str, Any]]] = []
        # The task's checkpoint as the engine keeps it: the runs of one task share it.
        self.checkpoint: dict[str, Any] = {}

    async def run(self, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        async def fetch() -> bytes:
            return self.package

        async def report(message: str, percent: int | None, data: dict[str, Any]) -> None:
            self.reports.append((message, percent, data))

        async def keep(data: dict[str, Any]) -> None:
            self.checkpoint.update(data)

        release = Release(1, "appv-1", {}, self.manifest)
        result: dict[str, Any] = await self.provider.run_task(
            TaskRun(
                action=action,
                params=params or {},
                cluster_id=self.cluster_id,
                zone=self.zone,
                credential=self.credential,
                release=release,
                previous=None,
                history=(release,) if self.manifest is not None else (),
                state=self.state,
                fetch_package=fetch,
                report=report,
                timeout_seconds=30,
                policy=self.policy,
                checkpoint=dict(self.checkpoint),
                keep=keep,
            )
        )
        if action == "render_spec":
            self.manifest = result["objects"]
        if action == "survey":
            self.state = ClusterState.model_validate(result)
        return result

    def ran(self) -> list[str]:
        """The services reported as run, in order."""
        return [m for m, _, _ in self.reports if m.startswith("ran ")]
