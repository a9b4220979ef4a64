"""A VM cloud provider plugin for tests, installed through an entry point (see
tests/support/plugins.py): the proof that a provider needs no change to the server."""

from openpitrix_testcloud.provider import TestCloudProvider

__all__ = ["TestCloudProvider"]
