"""The kubernetes and aws providers import their client libraries at first use, off the event
loop: a gateway or worker that never calls a cloud does not load them, and the one that does
keeps serving while the import (~0.5 s for kubernetes_asyncio) runs in a thread."""

from __future__ import annotations

import asyncio
import json
import sys

# A fresh interpreter: records on which thread each library's import starts, loads the
# providers, does what the gateway does with a kubeconfig that needs no cluster (parse it,
# redact a manifest), then the first call of each provider that reaches its cloud.
FIRST_USE = """
import asyncio, json, sys, threading

started_on_loop_thread = {}

class Spy:
    def find_spec(self, name, path=None, target=None):
        if name in ("kubernetes_asyncio", "aioboto3") and name not in started_on_loop_thread:
            started_on_loop_thread[name] = threading.current_thread() is threading.main_thread()
        return None

sys.meta_path.insert(0, Spy())

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.aws.provider import AwsProvider
from openpitrix.providers.base import Credential
from openpitrix.providers.kubernetes.provider import KubernetesProvider

KUBECONFIG = '''
apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
'''

async def main():
    kube, aws = KubernetesProvider(), AwsProvider()
    report = {"loaded_with_providers": sorted(set(started_on_loop_thread))}
    credential = kube.parse_credential(KUBECONFIG, "")
    kube.redact_manifest([{"kind": "Secret", "data": {"password": "c2VjcmV0"}}])
    report["loaded_by_parse_and_redact"] = sorted(set(started_on_loop_thread))
    # The first calls that reach a cloud: they fail (nothing listens, the AWS key is not
    # one), after the import.
    for provider, cred in (
        (kube, credential),
        (aws, Credential(provider="aws", endpoint_url="", content="not a key")),
    ):
        try:
            await provider.describe_zones(cred, AddressPolicy(allow_private=True))
        except Exception as exc:
            report.setdefault("errors", []).append(type(exc).__name__)
    report["started_on_loop_thread"] = started_on_loop_thread
    report["usable"] = [m in sys.modules for m in ("kubernetes_asyncio.client", "aioboto3")]
    print(json.dumps(report))

asyncio.run(main())
"""


async def test_client_libraries_load_at_first_use_in_a_thread_not_on_the_event_loop() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FIRST_USE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    # Loading the providers, parsing a kubeconfig and redacting a manifest load neither.
    assert report["loaded_with_providers"] == []
    assert report["loaded_by_parse_and_redact"] == []
    # Each first call imported its library, in a thread other than the event loop's.
    assert report["errors"] == ["ProviderError", "CredentialInvalid"], report
    assert report["started_on_loop_thread"] == {"kubernetes_asyncio": False, "aioboto3": False}
    assert report["usable"] == [True, True]
