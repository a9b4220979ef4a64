"""FakeKube: the fake API server's lifecycle, kubeconfig, kubectl runner, hooks and inspection."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
import yaml

from tests.support.kube.api import Api, WriteOptions
from tests.support.kube.app import KubeApp, RequestRecord
from tests.support.kube.controllers import Controllers
from tests.support.kube.kubelet import FAILING_REASONS, PENDING, Health
from tests.support.kube.resources import NAMESPACE_TYPE, Registry
from tests.support.kube.store import Store
from tests.support.threaded_server import AsyncServed, LoopServer, bind_loopback

Obj = dict[str, Any]
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class KubectlResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class FakeKube(AsyncServed):
    """A strict fake Kubernetes API server on 127.0.0.1, served in the running event loop.

    `auto_ready`: workloads, claims and load balancers become ready on their own (after the
    controller delay, plus `ready_after` seconds from a generation's first reconcile: a rollout
    that takes a while); otherwise they stay pending until `make_ready`/`make_failing`.
    `tls`: serve HTTPS with a CA of its own and require the kubeconfig's bearer token, as a
    real cluster does. With tls=False it serves plain HTTP and lets anonymous requests in:
    client-go (kubectl) never sends a bearer token over plain HTTP.
    """

    def __init__(
        self,
        *,
        auto_ready: bool = False,
        ready_after: float = 0.0,
        controller_delay: float = 0.05,
        namespace_delay: float = 0.5,
        nodes: int = 1,
        token: str | None = None,
        tls: bool = True,
        watch_history: int = 20000,
    ) -> None:
        self.registry = Registry()
        # Events older than the last `watch_history` writes are compacted: watching from
        # before them is 410 Expired, as after etcd compaction.
        self.store = Store(history=watch_history)
        self.api = Api(self.store, self.registry)
        self.token = token or secrets.token_hex(16)
        node_names = [f"fake-node-{i + 1}" for i in range(nodes)]
        self.controllers = Controllers(
            self.api,
            delay=controller_delay,
            namespace_delay=namespace_delay,
            nodes=node_names,
            auto_ready=auto_ready,
            ready_after=ready_after,
        )
        self.app = KubeApp(
            self.api, token=self.token if tls else None, address=lambda: self._address
        )
        self.url = ""
        self._address = ""
        self._tls = trustme.CA() if tls else None
        self._workdir: Path | None = None
        self._server: LoopServer | None = None

    # ------------------------------------------------------------------------- lifecycle

    async def start(self) -> FakeKube:
        self._workdir = Path(tempfile.mkdtemp(prefix="fakekube-"))
        sock = bind_loopback()
        port = sock.getsockname()[1]
        self._address = f"127.0.0.1:{port}"
        ssl: dict[str, Any] = {}
        if self._tls is not None:
            cert = self._tls.issue_cert("127.0.0.1", "localhost")
            cert.private_key_and_cert_chain_pem.write_to_path(str(self._workdir / "server.pem"))
            ssl = {"ssl_certfile": str(self._workdir / "server.pem")}
        self.url = f"{'https' if self._tls else 'http'}://{self._address}"
        self._server = LoopServer(self.app, sock=sock, timeout_graceful_shutdown=2, **ssl)
        await self._server.start()
        if self._tls is not None:
            self.controllers.ca_bundle = self._tls.cert_pem.bytes().decode()
        self._bootstrap()
        await self.settle()
        return self

    def _bootstrap(self) -> None:
        """What a fresh cluster has: its namespaces, nodes, and the `kubernetes` Service."""
        for name in SYSTEM_NAMESPACES:
            self.api.put_internal(
                NAMESPACE_TYPE, {"metadata": {"name": name}}, manager="kube-apiserver"
            )
        for name in self.controllers.nodes:
            node = {
                "metadata": {
                    "name": name,
                    "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
                },
                "status": {
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                    "addresses": [
                        {"type": "InternalIP", "address": "172.18.0.2"},
                        {"type": "Hostname", "address": name},
                    ],
                    "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                    "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                },
            }
            self.api.put_internal(self.registry.find("nodes"), node, manager="kubelet")
        service = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
        }
        self.api.create(
            self.registry.find("services"),
            "default",
            service,
            WriteOptions(manager="kube-apiserver"),
        )

    async def stop(self) -> None:
        self.store.close()
        self.controllers.cancel()
        if self._server is not None:
            await self._server.stop()
        self._server = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self.controllers.errors:
            raise RuntimeError("a fake controller failed") from self.controllers.errors[0]

    # ----------------------------------------------------------------------- client side

    def kubeconfig_dict(self, namespace: str | None = None) -> Obj:
        cluster: Obj = {"server": self.url}
        if self._tls is not None:
            cluster["certificate-authority-data"] = base64.b64encode(
                self._tls.cert_pem.bytes()
            ).decode()
        context: Obj = {"cluster": "fake", "user": "fake-admin"}
        if namespace:
            context["namespace"] = namespace
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake-admin", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": context}],
            "current-context": "fake",
            "preferences": {},
        }

    def kubeconfig(self, path: Path, namespace: str | None = None) -> Path:
        """Write a kubeconfig (inline token, and CA when TLS is on) pointing at the fake."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig_dict(namespace), sort_keys=False))
        return path

    async def kubectl(
        self, *args: str, stdin: str | None = None, timeout: float = 30
    ) -> KubectlResult:
        """Run the real kubectl against the fake, with a discovery cache of this server's own."""
        workdir = self._started()
        config = self.kubeconfig(workdir / "kubeconfig")
        env = {
            **os.environ,
            "KUBECONFIG": str(config),
            "HOME": str(workdir),
            # `kubectl edit` must not wait for a person: an editor that saves nothing.
            "KUBE_EDITOR": "true",
        }
        proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            "--cache-dir",
            str(workdir / "cache"),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin else None), timeout
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return KubectlResult(proc.returncode or 0, out.decode(), err.decode())

    def _started(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("FakeKube is not started")
        return self._workdir

    # ------------------------------------------------------------------------ test hooks

    @property
    def auto_ready(self) -> bool:
        return self.controllers.auto_ready

    @auto_ready.setter
    def auto_ready(self, value: bool) -> None:
        self.controllers.auto_ready = value

    def _set_health(self, namespace: str, kind: str, name: str, health: Health) -> Obj:
        rt = self.registry.find(kind)
        found = self.store.find(rt, namespace, name)
        if found is None:
            raise KeyError(f"no {rt.kind} {namespace}/{name} in the fake")
        generation = int(found["metadata"].get("generation", 0))
        key = (rt.plural, namespace if rt.namespaced else "", name)
        self.controllers.health[key] = Health(
            health.state, health.reason, health.message, generation
        )
        self.controllers._run(lambda: self.controllers.reconcile(key))
        return self.get(kind, namespace, name) or {}

    def hold_writes(self) -> None:
        """Writes (create, apply, patch, delete) wait, unanswered, until `release_writes`:
        a task acting on the cluster stays in the middle of its action."""
        self.app.writes_open = asyncio.Event()

    def release_writes(self) -> None:
        if self.app.writes_open is not None:
            self.app.writes_open.set()
            self.app.writes_open = None

    def make_ready(self, namespace: str, kind: str, name: str) -> Obj:
        """Mark a workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job), claim,
        Service or Ingress ready for its current generation; returns it as stored."""
        return self._set_health(namespace, kind, name, Health("ready"))

    def make_failing(
        self,
        namespace: str,
        kind: str,
        name: str,
        reason: str = "ImagePullBackOff",
        message: str = "",
    ) -> Obj:
        """Make it fail as a cluster would show it: pods waiting on ImagePullBackOff /
        ErrImagePull / CrashLoopBackOff or unschedulable, with the node's Warning events; or a
        Deployment past its progress deadline, a Job past its backoff limit."""
        if reason not in FAILING_REASONS:
            raise ValueError(f"reason must be one of {FAILING_REASONS}")
        return self._set_health(namespace, kind, name, Health("failing", reason, message))

    def set_quota(
        self, namespace: str, name: str, hard: dict[str, str], used: dict[str, str]
    ) -> Obj:
        """A ResourceQuota as the quota controller keeps it: `spec.hard` and a status with
        what the namespace uses (the fake does not compute usage; the test says it)."""
        rt = self.registry.find("resourcequotas")
        quota = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"hard": hard},
            "status": {"hard": hard, "used": used},
        }
        return self.api.put_internal(
            rt, quota, manager="resourcequota-controller", subresource="status"
        )

    def make_pending(self, namespace: str, kind: str, name: str) -> Obj:
        return self._set_health(namespace, kind, name, PENDING)

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until the controllers have acted on every write so far."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.controllers.busy():
            if loop.time() > deadline:
                raise TimeoutError("fake controllers did not settle")
            await asyncio.sleep(self.controllers.delay / 2 or 0.005)

    # ------------------------------------------------------------------------ inspection

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """Stored objects of a kind (Kind, plural or short name), as the API returns them."""
        rt = self.registry.find(kind)
        return [self.api.present(rt, o) for o in self.store.items(rt, namespace)]

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        rt = self.registry.find(kind)
        found = self.store.find(rt, namespace, name)
        return self.api.present(rt, found) if found is not None else None

    @property
    def requests(self) -> list[RequestRecord]:
        return self.app.requests

    def requests_matching(
        self, method: str | None = None, path: str | None = None
    ) -> list[RequestRecord]:
        """Requests by method and path prefix, e.g. ("PATCH", "/apis/apps/v1/namespaces/x")."""
        return [
            r
            for r in self.app.requests
            if (method is None or r.method == method) and (path is None or r.path.startswith(path))
        ]

    def managers(self, kind: str, namespace: str, name: str) -> dict[str, list[str]]:
        """manager -> its managedFields entries, as "Apply", "Update" or "Update/status"."""
        found = self.get(kind, namespace, name) or {}
        out: dict[str, list[str]] = {}
        for entry in copy.deepcopy(found.get("metadata", {}).get("managedFields") or []):
            sub = f"/{entry['subresource']}" if entry.get("subresource") else ""
            out.setdefault(entry["manager"], []).append(entry["operation"] + sub)
        return out
