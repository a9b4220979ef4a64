"""A strict fake Kubernetes API server for tests (see FakeKube)."""

from tests.support.kube.app import RequestRecord
from tests.support.kube.fake import FakeKube, KubectlResult

__all__ = ["FakeKube", "KubectlResult", "RequestRecord"]
