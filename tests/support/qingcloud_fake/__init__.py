"""A strict fake QingCloud IaaS API on 127.0.0.1, served by uvicorn in a thread of its own.

It checks every request as QingCloud does: the common parameters, the access key, the
signature (computed with the official `qingcloud-sdk` signer, so our client is checked against
QingCloud's own algorithm, not against itself), the time stamp, each action's parameters (names,
types, required ones; unknown names are refused too, so a typo in the client shows). It keeps
instances, volumes and jobs; jobs run on the fake's loop (pending -> working -> successful after
`job_delay` each), and resources move through their transition statuses as they run. A new
instance is listed only once its RunInstances job has started (see `cloud`), as QingCloud's
asynchronous jobs allow: a launch accepted is not at once a launch visible.

Tests steer it from their own thread: `fail_next` (a QingCloud error for the next call of an
action), `fail_jobs` (the next jobs of an action end `failed`), `pause_jobs`/`resume_jobs`,
`hold_jobs`/`release_jobs` (an action's jobs stay pending), `hold_requests`/`release_requests`
(an action's requests wait unanswered, as one in flight when its sender dies),
`http_status_next` (an HTTP error), `quota` (what the account may hold), and read
`instances()`, `volumes()`, `jobs()`, `requests` and `hits`.
"""

from tests.support.qingcloud_fake.resources import FakeInstance, FakeJob, FakeVolume
from tests.support.qingcloud_fake.server import QingCloudFake, Request, running_fake

__all__ = ["FakeInstance", "FakeJob", "FakeVolume", "QingCloudFake", "Request", "running_fake"]
