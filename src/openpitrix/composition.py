"""The one place a process's parts are registered: the installed providers, the job engine's
adapters and the hooks a lower domain asks a higher one through. The gateway and the workers
both build from it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from openpitrix.clusters import service as clusters
from openpitrix.clusters.jobs import ClusterJobs
from openpitrix.indexer.jobs import RepoJobs
from openpitrix.jobs.adapter import JobAdapters
from openpitrix.providers.registry import Providers, load_providers
from openpitrix.runtimes.service import ClusterHooks


@dataclass(frozen=True)
class Registry:
    """What the composition root hands the gateway and the workers."""

    # The runtime providers installed (the `openpitrix.providers` entry points).
    providers: Providers
    # The resource kinds whose jobs the job engine runs (and the API may cancel or retry).
    job_adapters: JobAdapters
    # A runtime's delete asks the clusters on it; clusters sit above runtimes, so the answer
    # is handed in.
    cluster_hooks: ClusterHooks


def build_registry(providers: Providers | None = None) -> Registry:
    """The registry of this process; `providers` are those installed unless given."""
    providers = load_providers() if providers is None else providers
    return Registry(
        providers=providers,
        job_adapters=JobAdapters([ClusterJobs(providers), RepoJobs()]),
        cluster_hooks=ClusterHooks(
            live=clusters.live_clusters,
            delete=partial(clusters.delete_clusters, providers=providers),
        ),
    )
