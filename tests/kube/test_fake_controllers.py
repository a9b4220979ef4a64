"""The fake cluster's controllers and test hooks: pods, readiness, failure signals."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests.kube.helpers import deployment, make_client
from tests.support.kube import FakeKube

# ------------------------------------------------------------------------ status subresource


async def test_status_is_written_only_through_its_subresource(
    api: ApiClient, kube: FakeKube
) -> None:
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment("default", deployment("web"))
    await kube.settle()
    # Through the main resource a status change is ignored...
    await apps.patch_namespaced_deployment("web", "default", {"status": {"replicas": 42}})
    assert (await apps.read_namespaced_deployment_status("web", "default")).status.replicas == 2
    # ...through /status it is stored, and spec changes there are ignored.
    patched = await apps.patch_namespaced_deployment_status(
        "web", "default", {"status": {"replicas": 42}, "spec": {"replicas": 9}}
    )
    assert patched.status.replicas == 42 and patched.spec.replicas == 2
    entries = {(e.manager, e.subresource) for e in patched.metadata.managed_fields}
    assert ("OpenAPI-Generator", "status") in entries


# ---------------------------------------------------------------------------- test hooks


async def test_deployment_is_pending_until_made_ready(api: ApiClient, kube: FakeKube) -> None:
    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    created = await apps.create_namespaced_deployment("default", deployment("web"))
    assert created.status is None or created.status.observed_generation is None
    await kube.settle()

    pods = (await core.list_namespaced_pod("default", label_selector="app=web")).items
    assert len(pods) == 2
    assert all(p.status.phase == "Pending" for p in pods)
    owner = pods[0].metadata.owner_references[0]
    assert owner.kind == "ReplicaSet" and owner.controller
    rs = await apps.read_namespaced_replica_set(owner.name, "default")
    assert rs.metadata.owner_references[0].uid == created.metadata.uid

    pending = await apps.read_namespaced_deployment("web", "default")
    assert pending.status.observed_generation == 1 and not pending.status.ready_replicas
    kube.make_ready("default", "Deployment", "web")
    ready = await apps.read_namespaced_deployment("web", "default")
    s = ready.status
    assert (s.replicas, s.ready_replicas, s.available_replicas, s.updated_replicas) == (2, 2, 2, 2)
    assert {c.type: c.status for c in s.conditions} == {"Available": "True", "Progressing": "True"}
    pods = (await core.list_namespaced_pod("default", label_selector="app=web")).items
    assert all(p.status.phase == "Running" and p.status.container_statuses[0].ready for p in pods)

    # A new generation rolls out new pods, which are pending again.
    await apps.patch_namespaced_deployment(
        "web",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}},
    )
    await kube.settle()
    rolled = await apps.read_namespaced_deployment("web", "default")
    assert rolled.status.observed_generation == 2 and not rolled.status.ready_replicas

    await apps.delete_namespaced_deployment("web", "default")
    assert kube.objects("Pod", "default") == [] and kube.objects("ReplicaSet", "default") == []


async def test_auto_ready_readies_every_kind(tmp_path: Path) -> None:
    async with FakeKube(auto_ready=True) as kube, await make_client(kube, tmp_path) as api:
        apps, core, batch = client.AppsV1Api(api), client.CoreV1Api(api), client.BatchV1Api(api)
        sts = deployment("db", replicas=2) | {"kind": "StatefulSet"}
        sts["spec"]["serviceName"] = "db"
        sts["spec"]["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        ]
        await apps.create_namespaced_stateful_set("default", sts)
        await apps.create_namespaced_daemon_set(
            "default", deployment("agent") | {"kind": "DaemonSet"}
        )
        job = {
            "metadata": {"name": "migrate"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "m", "image": "busybox"}],
                    }
                }
            },
        }
        await batch.create_namespaced_job("default", job)
        await core.create_namespaced_persistent_volume_claim(
            "default",
            {
                "metadata": {"name": "cache"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "2Gi"}},
                },
            },
        )
        await core.create_namespaced_service(
            "default",
            {
                "metadata": {"name": "lb"},
                "spec": {
                    "type": "LoadBalancer",
                    "selector": {"app": "db"},
                    "ports": [{"port": 80}],
                },
            },
        )
        await kube.settle()

        s = (await apps.read_namespaced_stateful_set("db", "default")).status
        assert (s.ready_replicas, s.updated_replicas, s.observed_generation) == (2, 2, 1)
        assert sorted(
            p["metadata"]["name"]
            for p in kube.objects("Pod", "default")
            if p["metadata"]["name"].startswith("db-")
        ) == ["db-0", "db-1"]
        claims = {
            c["metadata"]["name"]: c["status"]["phase"]
            for c in kube.objects("PersistentVolumeClaim", "default")
        }
        assert claims == {"cache": "Bound", "data-db-0": "Bound", "data-db-1": "Bound"}
        d = (await apps.read_namespaced_daemon_set("agent", "default")).status
        assert (d.desired_number_scheduled, d.number_ready) == (1, 1)
        j = (await batch.read_namespaced_job("migrate", "default")).status
        assert j.succeeded == 1 and any(
            c.type == "Complete" and c.status == "True" for c in j.conditions
        )
        svc = await core.read_namespaced_service("lb", "default")
        assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.ports[0].node_port >= 30000
        assert svc.status.load_balancer.ingress[0].ip


async def test_make_failing_shows_image_pull_backoff_and_events(
    api: ApiClient, kube: FakeKube
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    await apps.create_namespaced_deployment(
        "default", deployment("web", image="nginx:nope", replicas=1)
    )
    await kube.settle()
    kube.make_failing("default", "Deployment", "web", "ImagePullBackOff")

    pod = (await core.list_namespaced_pod("default", label_selector="app=web")).items[0]
    waiting = pod.status.container_statuses[0].state.waiting
    assert waiting.reason == "ImagePullBackOff"
    assert waiting.message == 'Back-off pulling image "nginx:nope"'
    events = (
        await core.list_namespaced_event(
            "default", field_selector=f"involvedObject.name={pod.metadata.name},type=Warning"
        )
    ).items
    assert {e.reason for e in events} == {"Failed", "BackOff"}
    assert any(e.message.startswith('Failed to pull image "nginx:nope"') for e in events)
    assert all(e.involved_object.kind == "Pod" for e in events)

    kube.make_failing("default", "Deployment", "web", "Unschedulable")
    pod = (await core.list_namespaced_pod("default", label_selector="app=web")).items[0]
    scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert any(
        e.reason == "FailedScheduling" for e in (await core.list_namespaced_event("default")).items
    )


async def test_a_deleted_pod_is_replaced_by_its_replica_set(api: ApiClient, kube: FakeKube) -> None:
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment("default", deployment("web", replicas=1))
    await kube.settle()
    [pod] = kube.objects("Pod", "default")
    await core.delete_namespaced_pod(pod["metadata"]["name"], "default")
    await kube.settle()
    [replacement] = kube.objects("Pod", "default")
    assert replacement["metadata"]["name"] != pod["metadata"]["name"]
    assert replacement["metadata"]["labels"]["app"] == "web"


async def test_failing_job_and_stalled_deployment(api: ApiClient, kube: FakeKube) -> None:
    batch, apps = client.BatchV1Api(api), client.AppsV1Api(api)
    pod_spec = {"restartPolicy": "Never", "containers": [{"name": "m", "image": "busybox"}]}
    job = {
        "metadata": {"name": "migrate"},
        "spec": {"backoffLimit": 2, "template": {"spec": pod_spec}},
    }
    await batch.create_namespaced_job("default", job)
    await apps.create_namespaced_deployment("default", deployment("web"))
    await kube.settle()

    kube.make_failing("default", "Job", "migrate", "BackoffLimitExceeded")
    status = (await batch.read_namespaced_job("migrate", "default")).status
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert (failed.status, failed.reason, status.failed) == ("True", "BackoffLimitExceeded", 3)

    kube.make_failing("default", "Deployment", "web", "ProgressDeadlineExceeded")
    status = (await apps.read_namespaced_deployment("web", "default")).status
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")

    kube.make_failing("default", "Deployment", "web", "CrashLoopBackOff")
    pods = await client.CoreV1Api(api).list_namespaced_pod("default", label_selector="app=web")
    pod = pods.items[0]
    container = pod.status.container_statuses[0]
    assert container.state.waiting.reason == "CrashLoopBackOff"
    assert container.last_state.terminated.exit_code == 1 and container.restart_count > 0


async def test_auto_ready_with_ready_after_keeps_each_rollout_pending_first(
    tmp_path: Path,
) -> None:
    """`ready_after` (the deploy benchmark's slow readiness): a new generation stays pending
    after the controllers have acted, then becomes ready on its own."""
    async with (
        FakeKube(auto_ready=True, ready_after=1.5) as kube,
        await make_client(kube, tmp_path) as api,
    ):
        apps = client.AppsV1Api(api)
        await apps.create_namespaced_deployment("default", deployment("web"))
        await kube.settle()
        pending = await apps.read_namespaced_deployment("web", "default")
        assert pending.status.observed_generation == 1 and not pending.status.ready_replicas
        assert (await _ready_generation(apps, "web")) == 1

        await apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
        await kube.settle()
        rolling = await apps.read_namespaced_deployment("web", "default")
        assert rolling.status.observed_generation == 2
        assert rolling.status.updated_replicas != 3 or rolling.status.ready_replicas != 3
        assert (await _ready_generation(apps, "web")) == 2


async def _ready_generation(apps: client.AppsV1Api, name: str) -> int:
    """The generation the deployment is ready at, once every replica is (polled, 10 s at most)."""
    for _ in range(100):
        dep = await apps.read_namespaced_deployment(name, "default")
        s = dep.status
        if s.ready_replicas and s.ready_replicas == dep.spec.replicas == s.updated_replicas:
            return int(s.observed_generation)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never became ready")
