"""One settings tree for every process, read from OPENPITRIX_* environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BusSettings(BaseModel):
    """JetStream streams and consumer behaviour."""

    commands_stream: str = Field(
        "OP_CMD", description="Work-queue stream holding op.cmd.> commands."
    )
    events_stream: str = Field("OP_EVT", description="Limits stream holding op.evt.> events.")
    events_max_age_seconds: int = Field(7 * 24 * 3600, description="How long events are kept.")
    duplicate_window_seconds: int = Field(
        600, description="Nats-Msg-Id de-duplication window; covers relay re-publishes."
    )
    ack_wait_seconds: float = Field(
        30.0, description="Redeliver a command this long after its last heartbeat."
    )
    max_deliver: int = Field(10, description="Deliveries of one command before it is given up.")
    backoff_seconds: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 15.0, 30.0, 60.0],
        description="Delays before a failed command is delivered again, by attempt (the last "
        "repeats). A command whose worker died is redelivered after ack_wait.",
    )
    max_ack_pending: int = Field(1000, description="Unacked commands one consumer may hold.")
    login_limits_bucket: str = Field(
        "OP_LOGIN_LIMITS",
        description="Key-value bucket counting login attempts, shared by every gateway replica; "
        "a counter expires once idle for the longest login window.",
    )


class IndexerSettings(BaseModel):
    """Repo indexer behaviour."""

    default_interval_seconds: int = Field(
        3600, description="Periodic re-index interval for repos that set none."
    )
    scheduler_tick_seconds: float = Field(
        15.0, description="How often each indexer replica looks for due repos."
    )
    max_index_bytes: int = Field(
        64 * 1024 * 1024, description="Largest index.yaml accepted, after decompression."
    )
    fetch_timeout_seconds: float = Field(30.0, description="Timeout of one index fetch.")
    shrink_threshold: float = Field(
        0.5,
        description="Refuse an index that drops more than this share of active versions "
        "(unless the re-index is forced).",
    )
    verify_tls: bool = Field(True, description="Verify TLS certificates of repo URLs.")
    allow_private_addresses: bool | None = Field(
        None,
        description="Deprecated: use `network.allow_private_addresses` "
        "(OPENPITRIX_NETWORK__ALLOW_PRIVATE_ADDRESSES), which it sets when that is unset.",
    )
    job_stale_seconds: int = Field(
        900,
        description="An index job silent this long (its worker died on the last delivery) is "
        "failed as abandoned when the repo is indexed again, so the repo is never stuck.",
    )


class NetworkSettings(BaseModel):
    """Outbound connections to addresses users supply."""

    allow_private_addresses: bool = Field(
        False,
        description="Let connections to user-supplied addresses (repo indexes, chart packages, "
        "kubeconfig API servers, any provider endpoint) reach loopback, private, link-local "
        "(cloud metadata) and other non-public addresses. Off, they fail with "
        "`address_not_allowed`; `openpitrix serve` turns it on unless it is set explicitly.",
    )


class WorkerSettings(BaseModel):
    """Manager worker behaviour."""

    concurrency: int = Field(
        8, description="Commands one worker process handles at once, per manager."
    )
    task_concurrency: int = Field(
        32,
        ge=1,
        description="Job tasks one task-manager process runs at once: they mostly wait on "
        "providers (readiness polls), so more than other commands. `--concurrency` overrides.",
    )
    drain_seconds: float = Field(20.0, description="Grace period on SIGTERM before naking.")
    fetch_timeout_seconds: float = Field(1.0, description="Long-poll time of one fetch.")
    task_timeout_seconds: float = Field(
        600.0, description="Longest a job task may run (a provider may plan a shorter one)."
    )
    task_max_attempts: int = Field(
        4,
        description="Runs of one task before a transient failure (API 5xx, 429, resets) fails it.",
    )
    task_retry_base_seconds: float = Field(
        2.0, description="Delay before a task's first retry; doubles each time, at most 60 s."
    )
    runtime_concurrency: int = Field(
        16,
        ge=0,
        description="Job tasks acting on one runtime at once, across all task-managers "
        "(0: no cap). Further tasks wait in order and start as running ones end, or as one "
        "only watches the runtime (a readiness wait gives its slot back).",
    )
    waiting_sweep_seconds: float = Field(
        5.0, description="How often a task-manager re-dispatches waiting tasks that have room."
    )


class AuthSettings(BaseModel):
    """Tokens and secrets."""

    jwt_secret: SecretStr | None = Field(
        None,
        description="HMAC key signing access tokens. Unset: a random key kept in "
        "`<data_dir>/jwt.key` (fine for one machine; set it when gateways are replicated).",
    )
    access_token_ttl_seconds: int = Field(900, description="Lifetime of an access token.")
    check_cache_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="How long a gateway reuses what a token check read about a user or API "
        "client (status, role, group) before reading it again; 0 reads it on every request. "
        "A change is dropped at once from the gateway that made it and, by a NATS broadcast, "
        "from every other one: this is only the bound if a broadcast is lost.",
    )
    refresh_token_ttl_seconds: int = Field(
        30 * 24 * 3600, description="Lifetime of a refresh token."
    )
    secret_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Fernet keys encrypting stored secrets, newest first: new writes use the "
        "first, every key still decrypts (rotation). Empty: one key kept in "
        "`<data_dir>/secret.key`.",
    )
    login_failures_per_account: int = Field(
        10,
        ge=0,
        description="Failed password logins one account (known or not) may have per window; "
        "past it the token endpoint answers 429 without checking the password (0: no limit). "
        "Ten covers a person's typos while an online guesser gets under a thousand tries a "
        "day. Anyone can spend an account's budget, so the window also bounds how long they "
        "can lock its owner out.",
    )
    login_account_window_seconds: int = Field(
        900,
        ge=1,
        description="Fixed window of the per-account count, from its first counted attempt.",
    )
    login_attempts_per_address: int = Field(
        60,
        ge=0,
        description="Password logins, failed or not, one client address (an IPv6 /64 counts "
        "as one) may make per window (0: no limit). It stops one host spraying a password "
        "over many accounts; sixty leaves room for an office behind one NAT, since refresh "
        "tokens keep sessions alive and password logins are rare.",
    )
    login_address_window_seconds: int = Field(
        900,
        ge=1,
        description="Fixed window of the per-address count, from its first attempt.",
    )


class HttpSettings(BaseModel):
    """Limits of the HTTP gateway, per process."""

    max_body_bytes: int = Field(
        1024 * 1024,
        ge=0,
        description="Largest request body of a JSON or form route; a larger one is refused "
        "with 413 before it is read.",
    )
    max_upload_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Largest request body of a route that takes an upload (marked `x-upload` "
        "in the OpenAPI document).",
    )
    sse_streams_per_caller: int = Field(
        100, ge=1, description="Event streams one user may hold open at once in this process."
    )
    sse_streams_per_process: int = Field(
        10_000, ge=1, description="Event streams this process serves at once, all callers."
    )
    sse_client_buffer: int = Field(
        1000,
        ge=1,
        description="Events buffered for one event stream client; a client that falls this "
        "far behind is disconnected and resumes with `Last-Event-ID`.",
    )
    sse_retry_after_seconds: int = Field(
        5, ge=1, description="`Retry-After` of a 429 refusing an event stream over a cap."
    )
    cluster_write_concurrency: int = Field(
        4,
        ge=1,
        description="PostgreSQL: cluster actions whose write transaction this process runs "
        "at once (SQLite's write lock runs one); later ones wait their turn before taking a "
        "connection. Deploys are not counted: those arriving together share one transaction. "
        "More "
        "at once do not finish sooner (they share one event loop), but every round trip of "
        "each, and of the outbox relay and the event streams, waits behind all of theirs: a "
        "job's first event came seconds after its 202.",
    )
    database_retry_after_seconds: int = Field(
        5, ge=1, description="`Retry-After` of a 503 answered while the database is unreachable."
    )


class DatabaseSettings(BaseModel):
    """The connection pool of each process (gateway, worker)."""

    pool_size: int = Field(
        20,
        ge=1,
        description="Connections each process keeps open and reuses. Requests beyond it wait "
        "for a free one (up to `pool_timeout_seconds`) unless `max_overflow` allows more. On "
        "PostgreSQL, every process's pool must fit in the server's `max_connections`.",
    )
    max_overflow: int = Field(
        0,
        ge=0,
        description="Extra connections opened past `pool_size` under load and closed when "
        "returned: each is a new connection per burst (connection churn), so 0 by default.",
    )
    pool_timeout_seconds: float = Field(
        30.0, gt=0, description="How long a request waits for a pooled connection."
    )
    pool_recycle_seconds: int = Field(
        1800,
        ge=-1,
        description="Connections older than this are closed and replaced at their next use "
        "(-1: never), so none outlives a server or proxy idle timeout.",
    )
    read_pool_size: int = Field(
        10,
        ge=1,
        description="PostgreSQL: connections of the gateway's separate pool for the hot list "
        "reads (run on the driver without a session), opened on first use and kept. Counts "
        "against `max_connections` like `pool_size`. (SQLite reads use a few connections "
        "of their own in a small thread pool.)",
    )
    pool_pre_ping: bool = Field(
        False,
        description="Test every connection with a round trip when it is taken from the pool. "
        "Off: a connection the server dropped (restart, failover) fails the one statement "
        "that meets it, which answers 503 and makes the pool replace every older connection.",
    )
    relay_pool_size: int = Field(
        2,
        ge=1,
        description="Connections of the outbox relay's own pool, apart from `pool_size`: the "
        "relay never waits for a connection behind the process's requests or commands, so a "
        "committed message (a job's first event) goes out while they queue.",
    )
    stream_pool_size: int = Field(
        4,
        ge=1,
        description="Connections of a gateway's pool for opening event streams (a job's "
        "stream checks the job and whether it has ended), apart from `pool_size`: a client "
        "following its job is not held up behind a burst of other requests.",
    )


class GcSettings(BaseModel):
    """Python's cyclic garbage collector in the gateway and worker processes (see
    `openpitrix.heap`)."""

    freeze_at_start: bool = Field(
        True,
        description="Once a process has started, move everything it holds into the permanent "
        "generation (gc.freeze), so collections stop walking the app, its models and caches.",
    )
    young_threshold: int = Field(
        50_000,
        ge=0,
        description="Net allocations between young-generation collections (Python's default "
        "is 700; 0 keeps it). Requests and tasks make many short-lived objects.",
    )


class Settings(BaseSettings):
    """Root of the settings tree. Nested fields use `__`: OPENPITRIX_BUS__MAX_DELIVER=5."""

    model_config = SettingsConfigDict(
        env_prefix="OPENPITRIX_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(
        Path(".openpitrix"), description="Embedded database file and nats-server store."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default is a SQLite file in the data dir."
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    nats_url: str | None = Field(
        None, description="NATS URL; default starts a child nats-server under the data dir."
    )
    host: str = Field("127.0.0.1", description="Address the HTTP gateway listens on.")
    port: int = Field(9100, description="Port the HTTP gateway listens on.")
    log_level: str = Field("INFO", description="Root log level.")
    log_json: bool = Field(False, description="Log one JSON object per line instead of key=value.")
    sse_keepalive_seconds: float = Field(15.0, description="Keep-alive comment interval on SSE.")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API cross-origin (CORS), e.g. "
        '["https://console.example.org"]. Empty (the default): CORS is off.',
    )
    relay_enabled: bool = Field(
        True, description="Run the outbox relay in this process (at least one process must)."
    )
    outbox_poll_seconds: float = Field(
        1.0, description="Relay fallback polling interval (local commits wake it at once)."
    )
    outbox_linger_seconds: float = Field(
        0.005,
        ge=0,
        le=1,
        description="How long the relay waits after a commit wakes it before it reads: the "
        "messages of commits that close together go out in one batch (one read, one mark) "
        "instead of a batch each. 0: read at once.",
    )
    bus: BusSettings = Field(default_factory=BusSettings)
    indexer: IndexerSettings = Field(default_factory=IndexerSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    gc: GcSettings = Field(default_factory=GcSettings)
    bootstrap_admin_email: str | None = Field(
        None, description="First admin created when no user exists."
    )
    bootstrap_admin_password: SecretStr | None = Field(
        None, description="Password of that first admin (generated and printed once if unset)."
    )

    @model_validator(mode="after")
    def _deprecated_private_addresses(self) -> Settings:
        # The setting used to cover repo fetches only, under `indexer`; its old name still
        # sets the server-wide one unless that is given too.
        old = self.indexer.allow_private_addresses
        if old is not None and "allow_private_addresses" not in self.network.model_fields_set:
            self.network = NetworkSettings(allow_private_addresses=old)
        return self

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'openpitrix.db').resolve()}"
