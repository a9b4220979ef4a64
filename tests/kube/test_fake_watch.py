"""Watches on the fake API server: event order, resourceVersion resumption, timeouts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests.kube.helpers import make_client
from tests.support.kube import FakeKube


async def test_watch_streams_added_modified_deleted(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    listed = await core.list_namespaced_config_map("default", label_selector="app=w")
    events: list[tuple[str, str, str]] = []

    async def follow() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(
                core.list_namespaced_config_map,
                "default",
                label_selector="app=w",
                resource_version=listed.metadata.resource_version,
                timeout_seconds=5,
            ):
                obj = event["object"]
                events.append((event["type"], obj.metadata.name, (obj.data or {}).get("v", "")))
                if event["type"] == "DELETED":
                    return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    await core.create_namespaced_config_map("default", {"metadata": {"name": "other"}})
    await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "w1", "labels": {"app": "w"}}, "data": {"v": "1"}}
    )
    await core.patch_namespaced_config_map("w1", "default", {"data": {"v": "2"}})
    await core.delete_namespaced_config_map("w1", "default")
    await asyncio.wait_for(task, 5)
    assert events == [("ADDED", "w1", "1"), ("MODIFIED", "w1", "2"), ("DELETED", "w1", "2")]


async def test_watch_replays_from_resource_version_and_times_out(api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    first = await core.create_namespaced_config_map("default", {"metadata": {"name": "r1"}})
    await core.create_namespaced_config_map("default", {"metadata": {"name": "r2"}})
    await core.delete_namespaced_config_map("r1", "default")

    seen = []
    started = asyncio.get_running_loop().time()
    async with watch.Watch() as w:
        async for event in w.stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=first.metadata.resource_version,
            timeout_seconds=1,
        ):
            seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "r2"), ("DELETED", "r1")]
    assert asyncio.get_running_loop().time() - started < 3


async def test_watch_follows_objects_into_and_out_of_its_selector(api: ApiClient) -> None:
    core = client.CoreV1Api(api)

    def labelled(app: str) -> dict[str, object]:
        return {"metadata": {"name": "m", "labels": {"app": app}}}

    await core.create_namespaced_config_map("default", labelled("a"))
    seen: list[tuple[str, str]] = []
    async with watch.Watch() as w:
        # No resourceVersion: the current matching objects come first as synthetic ADDED.
        stream = w.stream(
            core.list_namespaced_config_map, "default", label_selector="app=a", timeout_seconds=5
        )
        async for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 3:
                break
            # Out of the selector (DELETED), then back in (ADDED).
            await core.patch_namespaced_config_map("m", "default", labelled("ab"[len(seen) % 2]))
    assert seen == [("ADDED", "m"), ("DELETED", "m"), ("ADDED", "m")]


async def test_watch_from_a_compacted_version_is_gone(tmp_path: Path) -> None:
    async with FakeKube(watch_history=5) as kube, await make_client(kube, tmp_path) as api:
        core = client.CoreV1Api(api)
        first = await core.create_namespaced_config_map("default", {"metadata": {"name": "c0"}})
        for i in range(1, 8):
            await core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        w = watch.Watch()
        stream = w.stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=first.metadata.resource_version,
            timeout_seconds=2,
        )
        with pytest.raises(ApiException) as gone:
            await stream.next()
        await w.close()
        assert gone.value.status == 410
