"""The one place a process's parts are registered: the job engine's adapters and the hooks a
lower domain asks a higher one through. The gateway and the workers both build from it."""

from __future__ import annotations

from dataclasses import dataclass

from openpitrix.clusters import service as clusters
from openpitrix.clusters.jobs import ClusterJobs
from openpitrix.indexer.jobs import RepoJobs
from openpitrix.jobs.adapter import JobAdapters
from openpitrix.runtimes.service import ClusterHooks


@dataclass(frozen=True)
class Registry:
    """What the composition root hands the gateway and the workers."""

    # The resource kinds whose jobs the job engine runs (and the API may cancel or retry).
    job_adapters: JobAdapters
    # A runtime's delete asks the clusters on it; clusters sit above runtimes, so the answer
    # is handed in.
    cluster_hooks: ClusterHooks


def build_registry() -> Registry:
    return Registry(
        job_adapters=JobAdapters([ClusterJobs(), RepoJobs()]),
        cluster_hooks=ClusterHooks(live=clusters.live_clusters, delete=clusters.delete_clusters),
    )
