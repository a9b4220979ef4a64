"""Subjects, streams and durable consumers: declared here and nowhere else.

Commands: `op.cmd.<manager>.<verb>` on a work-queue stream; one durable pull consumer per manager,
shared by all its replicas (that is how a manager scales out).
Events: `op.evt.<owner>.<resource_kind>.<resource_id>.<job_id or _>` on a limits stream. The job id
token (an addition to the design's 4 tokens) lets a job's stream and a resource's stream both be
plain subject filters, so neither scans unrelated events.
Login limits: a key-value bucket of attempt counters that every gateway replica shares.
Auth changes: `op.auth.changed`, core NATS (no stream): gateways drop their cached token-check
facts of a user or API client that changed; a missed message is covered by the cache's TTL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import KV_STREAM_TEMPLATE
from nats.js.errors import APIError, BadRequestError

from openpitrix.settings import AuthSettings, BusSettings

log = logging.getLogger(__name__)

COMMAND_PREFIX = "op.cmd"
EVENT_PREFIX = "op.evt"
NO_JOB = "_"
# Outside both streams' subjects on purpose: fire-and-forget, nothing stored.
AUTH_CHANGED_SUBJECT = "op.auth.changed"

REPO_MANAGER = "repo-manager"
REPO_INDEXER = "repo-indexer"
JOB_MANAGER = "job-manager"
TASK_MANAGER = "task-manager"
MANAGERS: tuple[str, ...] = (REPO_MANAGER, REPO_INDEXER, JOB_MANAGER, TASK_MANAGER)

_FORBIDDEN = set(".*> \t\r\n")


def _token(value: str) -> str:
    if not value or any(ch in _FORBIDDEN for ch in value):
        raise ValueError(f"not a valid subject token: {value!r}")
    return value


def command_subject(manager: str, verb: str) -> str:
    return f"{COMMAND_PREFIX}.{_token(manager)}.{_token(verb)}"


def event_subject(owner: str, resource_kind: str, resource_id: str, job_id: str | None) -> str:
    return ".".join(
        (
            EVENT_PREFIX,
            _token(owner),
            _token(resource_kind),
            _token(resource_id),
            _token(job_id) if job_id else NO_JOB,
        )
    )


def redact_owner(subject: str) -> str:
    """The subject with an event's owner token hidden, for places that anyone may read (the
    unauthenticated readiness detail): the owner token is a user id."""
    prefix = EVENT_PREFIX + "."
    if not subject.startswith(prefix):
        return subject
    rest = subject[len(prefix) :].split(".", 1)
    return prefix + "*" + ("." + rest[1] if len(rest) > 1 else "")


def events_filter(
    owner: str | None = None, resource_kind: str | None = None, resource_id: str | None = None
) -> str:
    parts = [
        _token(owner) if owner else "*",
        _token(resource_kind) if resource_kind else "*",
        _token(resource_id) if resource_id else "*",
    ]
    return ".".join((EVENT_PREFIX, *parts, "*"))


@dataclass(frozen=True)
class Topology:
    commands_stream: StreamConfig
    events_stream: StreamConfig
    consumers: dict[str, ConsumerConfig]
    login_limits: KeyValueConfig


def build_topology(settings: BusSettings, auth: AuthSettings | None = None) -> Topology:
    commands = StreamConfig(
        name=settings.commands_stream,
        subjects=[f"{COMMAND_PREFIX}.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=settings.duplicate_window_seconds,
    )
    events = StreamConfig(
        name=settings.events_stream,
        subjects=[f"{EVENT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=settings.events_max_age_seconds,
        duplicate_window=settings.duplicate_window_seconds,
    )
    consumers = {
        manager: ConsumerConfig(
            durable_name=manager,
            filter_subject=f"{COMMAND_PREFIX}.{manager}.>",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_seconds,
            max_deliver=settings.max_deliver,
            # No consumer `backoff`: nats-server then takes its first value as the ack wait
            # (a 1 s default would redeliver any handler whose heartbeat is a second late,
            # running it twice at once). Workers nak with their own delays instead.
            max_ack_pending=settings.max_ack_pending,
        )
        for manager in MANAGERS
    }
    auth = auth or AuthSettings()
    login_limits = KeyValueConfig(
        bucket=settings.login_limits_bucket,
        description="Login attempt counters (openpitrix.iam.ratelimit)",
        history=1,
        # A counter is dropped once idle this long: by then its fixed window has ended, since
        # every write falls inside the window and the window is at most this long.
        ttl=max(auth.login_account_window_seconds, auth.login_address_window_seconds),
        storage=StorageType.FILE,
    )
    return Topology(commands, events, consumers, login_limits)


def heartbeat_interval(settings: BusSettings) -> float:
    """How often a busy handler says in_progress: a third of the ack wait, so two missed beats
    still do not get its command redelivered."""
    return settings.ack_wait_seconds / 3


async def ensure_topology(
    js: JetStreamContext, settings: BusSettings, auth: AuthSettings | None = None
) -> Topology:
    """Create or update the streams, consumers and buckets so every process agrees on them.

    `auth` sets the login counters' expiry (its defaults when omitted).
    """
    topo = build_topology(settings, auth)
    for stream in (topo.commands_stream, topo.events_stream):
        try:
            await js.add_stream(config=stream)
        except BadRequestError:
            await js.update_stream(config=stream)
    for config in topo.consumers.values():
        # Editable fields (ack_wait, max_deliver, backoff, ...) are updated in place; a backoff
        # an earlier version set is dropped.
        try:
            await js.add_consumer(settings.commands_stream, config=config)
        except APIError as exc:
            # A change the server cannot apply in place (e.g. deliver policy): recreate the
            # durable. Unacked commands stay in the work-queue stream and go to the new one.
            log.warning("recreating consumer %s: %s", config.durable_name, exc.description)
            assert config.durable_name is not None
            await js.delete_consumer(settings.commands_stream, config.durable_name)
            await js.add_consumer(settings.commands_stream, config=config)
    await _ensure_bucket(js, topo.login_limits)
    return topo


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    try:
        await js.create_key_value(config=config)
    except BadRequestError:
        # The bucket exists with another TTL (a login window changed). nats-py has no KV update,
        # but the TTL is the stream's max_age, which the server edits in place. The duplicate
        # window may not exceed it: the same min(2 minutes, ttl) create_key_value sets.
        assert config.ttl is not None
        name = KV_STREAM_TEMPLATE.format(bucket=config.bucket)
        current = (await js.stream_info(name)).config
        log.warning("updating bucket %s ttl=%s", config.bucket, config.ttl)
        await js.update_stream(
            config=current.evolve(max_age=config.ttl, duplicate_window=min(120.0, config.ttl))
        )
