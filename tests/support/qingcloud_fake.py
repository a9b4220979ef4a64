"""A strict fake QingCloud IaaS API on 127.0.0.1, served by uvicorn in a thread of its own.

It checks every request as QingCloud does: the common parameters, the access key, the
signature (computed with the official `qingcloud-sdk` signer, so our client is checked against
QingCloud's own algorithm, not against itself), the time stamp, each action's parameters (names,
types, required ones; unknown names are refused too, so a typo in the client shows). It keeps
instances, volumes and jobs; jobs run on the fake's loop (pending -> working -> successful after
`job_delay` each), and resources move through their transition statuses as they run.

Tests steer it from their own thread: `fail_next` (a QingCloud error for the next call of an
action), `fail_jobs` (the next jobs of an action end `failed`), `pause_jobs`/`resume_jobs`,
`http_status_next` (an HTTP error), `quota` (what the account may hold), and read
`instances()`, `volumes()`, `jobs()`, `requests` and `hits`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
import secrets
import socket
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn
from qingcloud.conn.auth import QuerySignatureAuthHandler

PATH = "/iaas/"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CPUS = {1, 2, 4, 8, 16}
MEMORIES = {1024, 2048, 4096, 6144, 8192, 12288, 16384, 24576, 32768}
INSTANCE_TYPES = {"c1m1": (1, 1024), "c1m2": (1, 2048), "c2m4": (2, 4096), "c4m8": (4, 8192)}
DEFAULT_QUOTA = {
    "instance": 20,
    "cpu": 40,
    "memory": 81920,
    "volume": 20,
    "volume_size": 2000,
}
COMMON = {"action", "zone", "access_key_id", "time_stamp", "version"}
COMMON |= {"signature_method", "signature_version", "signature", "expires", "req_id"}


class ApiError(Exception):
    """A QingCloud-shaped refusal: `{"ret_code": ..., "message": ...}`."""

    def __init__(self, ret_code: int, message: str) -> None:
        super().__init__(message)
        self.ret_code = ret_code
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError(1100, f"InvalidParameterValue, {message}")


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(2100, f"ResourceNotFound, {kind} [{ident}] not found")


def denied(message: str) -> ApiError:
    return ApiError(1400, f"PermissionDenied, {message}")


@dataclass(frozen=True)
class Spec:
    """An action's parameters: `lists` arrive as name.1, name.2 ...; `ints` must be integers."""

    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    ints: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()
    zone: bool = True  # the action needs `zone`


def spec(
    required: str = "", optional: str = "", ints: str = "", lists: str = "", zone: bool = True
) -> Spec:
    return Spec(
        frozenset(required.split()),
        frozenset(optional.split()),
        frozenset(ints.split()),
        frozenset(lists.split()),
        zone,
    )


PAGED = "offset limit verbose"
SPECS: dict[str, Spec] = {
    "DescribeZones": spec(optional="zones status", lists="zones status", zone=False),
    "GetQuotaLeft": spec(optional="resource_types", lists="resource_types"),
    "RunInstances": spec(
        required="image_id login_mode",
        optional="instance_type cpu memory count instance_name hostname vxnets security_group "
        "login_keypair login_passwd volumes os_disk_size need_userdata userdata_type "
        "userdata_value userdata_path need_newsid nic_mqueue instance_class",
        ints="cpu memory count os_disk_size need_userdata need_newsid nic_mqueue instance_class",
        lists="vxnets volumes",
    ),
    "DescribeInstances": spec(
        optional=f"instances status search_word tags {PAGED}",
        ints=PAGED,
        lists="instances status tags",
    ),
    "StopInstances": spec(required="instances", optional="force", ints="force", lists="instances"),
    "StartInstances": spec(required="instances", lists="instances"),
    "RestartInstances": spec(required="instances", lists="instances"),
    "ResizeInstances": spec(
        required="instances",
        optional="instance_type cpu memory",
        ints="cpu memory",
        lists="instances",
    ),
    "TerminateInstances": spec(required="instances", lists="instances"),
    "CreateVolumes": spec(
        required="size", optional="volume_name volume_type count", ints="size volume_type count"
    ),
    "DescribeVolumes": spec(
        optional=f"volumes instance_id status search_word {PAGED}",
        ints=PAGED,
        lists="volumes status",
    ),
    "AttachVolumes": spec(required="volumes instance", lists="volumes"),
    "DetachVolumes": spec(required="volumes instance", lists="volumes"),
    "ResizeVolumes": spec(required="volumes size", ints="size", lists="volumes"),
    "DeleteVolumes": spec(required="volumes", lists="volumes"),
    "DescribeJobs": spec(
        optional=f"jobs status job_action {PAGED}", ints=PAGED, lists="jobs status"
    ),
}


def now_text() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


def new_id(prefix: str) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(8))


@dataclass
class FakeInstance:
    instance_id: str
    instance_name: str
    image_id: str
    instance_type: str
    vcpus: int
    memory: int
    zone: str
    vxnet_id: str
    status: str = "pending"
    transition_status: str = "creating"
    private_ip: str = ""
    userdata_type: str = ""
    userdata: str = ""  # decoded
    volume_ids: list[str] = field(default_factory=list)
    create_time: str = field(default_factory=now_text)
    status_time: str = field(default_factory=now_text)

    def as_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "instance_name": self.instance_name,
            "status": self.status,
            "transition_status": self.transition_status,
            "instance_type": self.instance_type,
            "vcpus_current": self.vcpus,
            "memory_current": self.memory,
            "image": {"image_id": self.image_id},
            "vxnets": [
                {
                    "vxnet_id": self.vxnet_id,
                    "vxnet_name": "fake network",
                    "nic_id": f"52:54:{self.instance_id[2:6]}",
                    "private_ip": self.private_ip,
                }
            ],
            "volume_ids": list(self.volume_ids),
            "zone_id": self.zone,
            "create_time": self.create_time,
            "status_time": self.status_time,
        }


@dataclass
class FakeVolume:
    volume_id: str
    volume_name: str
    size: int
    volume_type: int
    zone: str
    status: str = "pending"
    transition_status: str = "creating"
    instance_id: str = ""
    create_time: str = field(default_factory=now_text)
    status_time: str = field(default_factory=now_text)


@dataclass
class FakeJob:
    job_id: str
    job_action: str
    resource_ids: list[str]
    zone: str
    status: str = "pending"
    create_time: str = field(default_factory=now_text)
    status_time: str = field(default_factory=now_text)

    def as_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "job_action": self.job_action,
            "status": self.status,
            "resource_ids": ",".join(self.resource_ids),
            "zone_id": self.zone,
            "create_time": self.create_time,
            "status_time": self.status_time,
            "owner": "usr-fake",
        }


@dataclass(frozen=True)
class Request:
    """One request as the fake received it (parameters decoded, signature left out)."""

    method: str
    action: str
    params: dict[str, str]


Step = Callable[[], None]  # a change a job makes to the fake's state, run under its lock


class QingCloudFake:
    """The fake server. `url` is the endpoint (`http://127.0.0.1:PORT/iaas/`); requests signed
    with `access_key_id`/`secret_access_key` (or a key added with `add_key`) are accepted."""

    def __init__(
        self,
        *,
        zones: tuple[str, ...] = ("pek3a", "pek3b", "sh1a"),
        images: tuple[str, ...] = ("centos7x64d", "bionic1x64"),
        job_delay: float = 0.05,
        max_clock_skew: float = 60.0,
    ) -> None:
        self.zones = zones
        self.images = set(images)
        self.keypairs = {"kp-fake0001"}
        self.vxnets = {"vxnet-0"}
        self.job_delay = job_delay
        self.max_clock_skew = max_clock_skew
        self.access_key_id = "QYFAKEACCESSKEY" + secrets.token_hex(3).upper()
        self.secret_access_key = secrets.token_urlsafe(30)
        self.quota = dict(DEFAULT_QUOTA)
        self.requests: list[Request] = []  # requests with the common parameters, in order
        self.hits = 0  # every HTTP request that reached the server, whatever it held
        self.url = ""
        self._keys = {self.access_key_id: self.secret_access_key}
        self._lock = threading.Lock()
        self._instances: dict[str, FakeInstance] = {}
        self._volumes: dict[str, FakeVolume] = {}
        self._jobs: dict[str, FakeJob] = {}
        self._failures: dict[str, list[ApiError]] = {}
        self._failing_jobs: dict[str, int] = {}
        self._http_statuses: list[int] = []
        self._next_ip = 2
        self._paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --------------------------------------------------------------------------- lifecycle

    def start(self) -> QingCloudFake:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it every answer (headers, then body) waits
        # ~40 ms on the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{PATH}"
        config = uvicorn.Config(
            self, log_config=None, lifespan="off", access_log=False, timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        self._server = server

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(server.serve(sockets=[sock]))
            finally:
                for task in list(self._tasks):
                    task.cancel()
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()
                sock.close()

        self._thread = threading.Thread(target=serve, name="qingcloud-fake", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake QingCloud server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> QingCloudFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------- steering by tests

    def add_key(self, access_key_id: str, secret_access_key: str) -> None:
        with self._lock:
            self._keys[access_key_id] = secret_access_key

    def fail_next(self, action: str, ret_code: int, message: str) -> None:
        """The next call of `action` (signed correctly) gets this QingCloud error."""
        with self._lock:
            self._failures.setdefault(action, []).append(ApiError(ret_code, message))

    def fail_jobs(self, action: str, count: int = 1) -> None:
        """The next `count` jobs of `action` end `failed` (what they made is terminated)."""
        with self._lock:
            self._failing_jobs[action] = self._failing_jobs.get(action, 0) + count

    def http_status_next(self, status: int) -> None:
        """The next request gets this HTTP status and a non-JSON body (a proxy's 502...)."""
        with self._lock:
            self._http_statuses.append(status)

    def pause_jobs(self) -> None:
        """Jobs stay where they are (pending, or working) until `resume_jobs`."""
        with self._lock:
            self._paused = True

    def resume_jobs(self) -> None:
        with self._lock:
            self._paused = False

    def instances(self) -> list[FakeInstance]:
        with self._lock:
            return [replace(i, volume_ids=list(i.volume_ids)) for i in self._instances.values()]

    def volumes(self) -> list[FakeVolume]:
        with self._lock:
            return [replace(v) for v in self._volumes.values()]

    def jobs(self) -> list[FakeJob]:
        with self._lock:
            return [replace(j, resource_ids=list(j.resource_ids)) for j in self._jobs.values()]

    def actions(self) -> list[str]:
        with self._lock:
            return [r.action for r in self.requests]

    # ------------------------------------------------------------------------------- ASGI

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Any],
        send: Callable[[dict[str, Any]], Any],
    ) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        with self._lock:
            self.hits += 1
            status = self._http_statuses.pop(0) if self._http_statuses else None
        if status is not None:
            await _respond(send, status, b"<html>upstream trouble</html>", "text/html")
            return
        if scope["path"] != PATH:
            await _respond(send, 404, b"not found", "text/plain")
            return
        method = scope["method"]
        if method == "GET":
            raw = scope["query_string"].decode("latin-1")
        elif method == "POST":
            raw = body.decode("latin-1")
        else:
            await _respond(send, 405, b"method not allowed", "text/plain")
            return
        try:
            answer = self._handle(method, raw)
        except ApiError as exc:
            answer = {"ret_code": exc.ret_code, "message": exc.message}
        await _respond(send, 200, orjson.dumps(answer), "application/json")

    # --------------------------------------------------------------------- the API itself

    def _handle(self, method: str, raw: str) -> dict[str, Any]:
        pairs = parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="strict")
        params: dict[str, str] = {}
        for name, value in pairs:
            if name in params:
                raise invalid(f"parameter [{name}] given twice")
            params[name] = value
        for name in ("action", "access_key_id", "time_stamp", "signature", "signature_method"):
            if not params.get(name):
                raise invalid(f"parameter [{name}] should not be empty")
        if params.get("signature_version") != "1" or params.get("version") != "1":
            raise invalid("signature_version and version must be 1")
        if params["signature_method"] != "HmacSHA256":
            raise invalid(f"signature_method [{params['signature_method']}] is not supported")
        with self._lock:
            self.requests.append(
                Request(
                    method, params["action"], {k: v for k, v in params.items() if k != "signature"}
                )
            )
            secret = self._keys.get(params["access_key_id"])
        if secret is None:
            raise ApiError(
                1200,
                f"AuthFailure, authentication failed: access key [{params['access_key_id']}]"
                " not found",
            )
        unsigned = {k: v for k, v in params.items() if k != "signature"}
        _qs, expected = QuerySignatureAuthHandler(
            PATH, params["access_key_id"], secret
        )._calc_signature(unsigned, method, PATH)
        if not hmac.compare_digest(expected.decode(), params["signature"]):
            raise ApiError(1200, "AuthFailure, authentication failed: signature not matched")
        self._check_time(params)
        action = params["action"]
        spec_ = SPECS.get(action)
        if spec_ is None:
            raise invalid(f"action [{action}] is not supported")
        args = self._arguments(spec_, params)
        with self._lock:
            queued = self._failures.get(action)
            if queued:
                raise queued.pop(0)
            handler = getattr(self, f"_do_{_snake(action)}")
            result: dict[str, Any] = handler(args)
        return {"action": f"{action}Response", "ret_code": 0, **result}

    def _check_time(self, params: dict[str, str]) -> None:
        try:
            stamp = datetime.strptime(params["time_stamp"], TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise invalid(f"time_stamp [{params['time_stamp']}] is not ISO 8601") from None
        if abs((datetime.now(UTC) - stamp).total_seconds()) > self.max_clock_skew:
            raise ApiError(1300, f"MessageExpired, time_stamp [{params['time_stamp']}] expired")

    def _arguments(self, spec_: Spec, params: dict[str, str]) -> dict[str, Any]:
        args: dict[str, Any] = {}
        indexed: dict[str, dict[int, str]] = {}
        for name, value in params.items():
            if name in COMMON:
                continue
            match = re.fullmatch(r"(.+)\.(\d+)", name)
            if match and match.group(1) in spec_.lists:
                indexed.setdefault(match.group(1), {})[int(match.group(2))] = value
                continue
            if name not in spec_.required | spec_.optional or name in spec_.lists:
                raise invalid(f"parameter [{name}] is not valid for this action")
            if name in spec_.ints:
                if not re.fullmatch(r"-?\d+", value):
                    raise invalid(f"parameter [{name}] should be an integer")
                args[name] = int(value)
            else:
                args[name] = value
        for name, items in indexed.items():
            if sorted(items) != list(range(1, len(items) + 1)):
                raise invalid(f"list parameter [{name}] should be numbered from 1")
            args[name] = [items[i] for i in sorted(items)]
        for name in spec_.required:
            if name not in args or args[name] in ("", []):
                raise invalid(f"parameter [{name}] should not be empty")
        if spec_.zone:
            zone = params.get("zone", "")
            if not zone:
                raise invalid("parameter [zone] should not be empty")
            if zone not in self.zones:
                raise invalid(f"zone [{zone}] is not available")
            args["zone"] = zone
        return args

    # --------------------------------------------------------------------------- jobs

    def _start_job(
        self, action: str, ids: list[str], zone: str, working: Step, done: Step, failed: Step
    ) -> str:
        """A job (called under the lock): `working` runs when it starts, then `done` (or
        `failed`, if the test asked for failing jobs) when it ends."""
        job = FakeJob(new_id("j-"), action, ids, zone)
        self._jobs[job.job_id] = job
        fails = self._failing_jobs.get(action, 0) > 0
        if fails:
            self._failing_jobs[action] -= 1

        async def step() -> None:
            await asyncio.sleep(self.job_delay)
            while self._paused:
                await asyncio.sleep(0.01)

        async def run() -> None:
            await step()
            with self._lock:
                job.status, job.status_time = "working", now_text()
                working()
            await step()
            with self._lock:
                (failed if fails else done)()
                job.status = "failed" if fails else "successful"
                job.status_time = now_text()

        # Handlers run on the fake's loop (uvicorn calls us there).
        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job.job_id

    # ---------------------------------------------------------------------- quotas, zones

    def _usage(self) -> dict[str, int]:
        live = [i for i in self._instances.values() if i.status not in ("terminated", "ceased")]
        kept = [v for v in self._volumes.values() if v.status not in ("deleted", "ceased")]
        return {
            "instance": len(live),
            "cpu": sum(i.vcpus for i in live),
            "memory": sum(i.memory for i in live),
            "volume": len(kept),
            "volume_size": sum(v.size for v in kept),
        }

    def _check_quota(self, wanted: dict[str, int]) -> None:
        usage = self._usage()
        for resource, amount in wanted.items():
            left = self.quota[resource] - usage[resource]
            if amount > left:
                raise ApiError(
                    2500,
                    f"QuotaExceeded, the quota of [{resource}] left is [{left}], "
                    f"but [{amount}] is needed",
                )

    def _do_describe_zones(self, args: dict[str, Any]) -> dict[str, Any]:
        wanted = args.get("zones") or list(self.zones)
        zones = [{"zone_id": z, "status": "active"} for z in self.zones if z in wanted]
        return {"zone_set": zones, "total_count": len(zones)}

    def _do_get_quota_left(self, args: dict[str, Any]) -> dict[str, Any]:
        usage = self._usage()
        types = args.get("resource_types") or list(self.quota)
        for name in types:
            if name not in self.quota:
                raise invalid(f"resource type [{name}] is not valid")
        left = [{"resource_type": t, "left": self.quota[t] - usage[t]} for t in types]
        return {"quota_left_set": left}

    # -------------------------------------------------------------------------- instances

    def _instance(self, ident: str, zone: str) -> FakeInstance:
        found = self._instances.get(ident)
        if found is None or found.zone != zone:
            raise not_found("instance", ident)
        return found

    def _do_run_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        zone = args["zone"]
        if args["image_id"] not in self.images:
            raise not_found("image", args["image_id"])
        if "instance_type" in args:
            if args["instance_type"] not in INSTANCE_TYPES:
                raise invalid(f"instance_type [{args['instance_type']}] is not valid")
            cpu, memory = INSTANCE_TYPES[args["instance_type"]]
        elif "cpu" in args and "memory" in args:
            cpu, memory = args["cpu"], args["memory"]
            if cpu not in CPUS or memory not in MEMORIES:
                raise invalid(f"cpu [{cpu}] / memory [{memory}] is not a valid combination")
        else:
            raise invalid("either instance_type or cpu and memory should be given")
        mode = args["login_mode"]
        if mode == "keypair":
            if args.get("login_keypair") not in self.keypairs:
                raise not_found("keypair", args.get("login_keypair", ""))
        elif mode == "passwd":
            if len(args.get("login_passwd", "")) < 8:
                raise invalid("login_passwd should have at least 8 characters")
        else:
            raise invalid(f"login_mode [{mode}] is not valid")
        vxnets = args.get("vxnets") or ["vxnet-0"]
        for vxnet in vxnets:
            if vxnet not in self.vxnets:
                raise not_found("vxnet", vxnet)
        count = args.get("count", 1)
        if not 1 <= count <= 100:
            raise invalid(f"count [{count}] should be between 1 and 100")
        userdata_type, userdata = self._userdata(args)
        self._check_quota({"instance": count, "cpu": cpu * count, "memory": memory * count})
        made = [
            FakeInstance(
                instance_id=new_id("i-"),
                instance_name=args.get("instance_name", ""),
                image_id=args["image_id"],
                instance_type=args.get("instance_type", f"c{cpu}m{memory // 1024}"),
                vcpus=cpu,
                memory=memory,
                zone=zone,
                vxnet_id=vxnets[0],
                userdata_type=userdata_type,
                userdata=userdata,
            )
            for _ in range(count)
        ]
        for instance in made:
            self._instances[instance.instance_id] = instance

        def done() -> None:
            for instance in made:
                instance.private_ip = f"192.168.0.{self._next_ip}"
                self._next_ip += 1
                _move(instance, "running")

        def failed() -> None:
            for instance in made:
                _move(instance, "terminated")

        ids = [i.instance_id for i in made]
        job_id = self._start_job("RunInstances", ids, zone, lambda: None, done, failed)
        return {"instances": ids, "job_id": job_id}

    def _userdata(self, args: dict[str, Any]) -> tuple[str, str]:
        names = ("userdata_type", "userdata_value", "userdata_path")
        if args.get("need_userdata", 0) != 1:
            if any(args.get(name) for name in names):
                raise invalid("userdata is given but need_userdata is not 1")
            return "", ""
        kind = args.get("userdata_type", "")
        if kind not in ("plain", "exec", "tar"):
            raise invalid(f"userdata_type [{kind}] is not valid")
        value = args.get("userdata_value", "")
        if kind == "tar":
            return kind, value  # an attachment id
        try:
            text = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise invalid("userdata_value should be base64 encoded") from None
        if kind == "exec" and not text.startswith("#!"):
            raise invalid("userdata of type exec should start with #!")
        return kind, text

    def _do_describe_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("tags"):
            raise invalid("the fake does not keep tags")
        found = [i for i in self._instances.values() if i.zone == args["zone"]]
        if "instances" in args:
            found = [i for i in found if i.instance_id in args["instances"]]
        if "status" in args:
            found = [i for i in found if i.status in args["status"]]
        if "search_word" in args:
            word = args["search_word"]
            found = [i for i in found if word in i.instance_id or word in i.instance_name]
        page = _page(found, args)
        return {"instance_set": [i.as_json() for i in page], "total_count": len(found)}

    def _instance_job(
        self,
        action: str,
        args: dict[str, Any],
        *,
        from_status: tuple[str, ...],
        transition: str,
        to_status: str,
        effect: Callable[[FakeInstance], None] = lambda _: None,
    ) -> dict[str, Any]:
        instances = [self._instance(ident, args["zone"]) for ident in args["instances"]]
        for instance in instances:
            if instance.status not in from_status or instance.transition_status:
                raise denied(
                    f"instance [{instance.instance_id}] is [{instance.status}"
                    f"{'/' + instance.transition_status if instance.transition_status else ''}]"
                    f", {action} needs {'/'.join(from_status)}"
                )
        before = {i.instance_id: i.status for i in instances}
        for instance in instances:
            instance.transition_status = transition

        def done() -> None:
            for instance in instances:
                effect(instance)
                _move(instance, to_status)

        def failed() -> None:
            for instance in instances:
                _move(instance, before[instance.instance_id])

        ids = [i.instance_id for i in instances]
        job_id = self._start_job(action, ids, args["zone"], lambda: None, done, failed)
        return {"job_id": job_id}

    def _do_stop_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("force", 0) not in (0, 1):
            raise invalid("force should be 0 or 1")
        return self._instance_job(
            "StopInstances",
            args,
            from_status=("running",),
            transition="stopping",
            to_status="stopped",
        )

    def _do_start_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._instance_job(
            "StartInstances",
            args,
            from_status=("stopped",),
            transition="starting",
            to_status="running",
        )

    def _do_restart_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._instance_job(
            "RestartInstances",
            args,
            from_status=("running",),
            transition="restarting",
            to_status="running",
        )

    def _do_resize_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        if "instance_type" in args:
            if args["instance_type"] not in INSTANCE_TYPES:
                raise invalid(f"instance_type [{args['instance_type']}] is not valid")
            cpu, memory = INSTANCE_TYPES[args["instance_type"]]
        elif "cpu" in args or "memory" in args:
            cpu, memory = args.get("cpu"), args.get("memory")
            if (cpu is not None and cpu not in CPUS) or (
                memory is not None and memory not in MEMORIES
            ):
                raise invalid(f"cpu [{cpu}] / memory [{memory}] is not valid")
        else:
            raise invalid("either instance_type or cpu/memory should be given")
        instances = [self._instance(ident, args["zone"]) for ident in args["instances"]]
        grow_cpu = sum(max((cpu or i.vcpus) - i.vcpus, 0) for i in instances)
        grow_memory = sum(max((memory or i.memory) - i.memory, 0) for i in instances)
        self._check_quota({"cpu": grow_cpu, "memory": grow_memory})

        def resize(instance: FakeInstance) -> None:
            instance.vcpus = cpu or instance.vcpus
            instance.memory = memory or instance.memory
            instance.instance_type = args.get(
                "instance_type", f"c{instance.vcpus}m{instance.memory // 1024}"
            )

        return self._instance_job(
            "ResizeInstances",
            args,
            from_status=("stopped",),
            transition="resizing",
            to_status="stopped",
            effect=resize,
        )

    def _do_terminate_instances(self, args: dict[str, Any]) -> dict[str, Any]:
        def detach(instance: FakeInstance) -> None:
            for volume_id in instance.volume_ids:
                volume = self._volumes[volume_id]
                volume.instance_id = ""
                _move(volume, "available")
            instance.volume_ids.clear()
            instance.private_ip = ""

        return self._instance_job(
            "TerminateInstances",
            args,
            from_status=("pending", "running", "stopped", "suspended"),
            transition="terminating",
            to_status="terminated",
            effect=detach,
        )

    # ----------------------------------------------------------------------------- volumes

    def _volume(self, ident: str, zone: str) -> FakeVolume:
        found = self._volumes.get(ident)
        if found is None or found.zone != zone or found.status in ("deleted", "ceased"):
            raise not_found("volume", ident)
        return found

    def _volume_json(self, volume: FakeVolume) -> dict[str, Any]:
        attached: dict[str, Any] = {}
        if volume.instance_id:
            instance = self._instances[volume.instance_id]
            device = f"/dev/vd{chr(ord('b') + instance.volume_ids.index(volume.volume_id))}"
            attached = {
                "instance_id": instance.instance_id,
                "instance_name": instance.instance_name,
                "device": device,
            }
        return {
            "volume_id": volume.volume_id,
            "volume_name": volume.volume_name,
            "size": volume.size,
            "volume_type": volume.volume_type,
            "status": volume.status,
            "transition_status": volume.transition_status,
            "instance": attached,
            "zone_id": volume.zone,
            "create_time": volume.create_time,
            "status_time": volume.status_time,
        }

    def _do_create_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        size, count = args["size"], args.get("count", 1)
        if size < 10 or size % 10:
            raise invalid(f"size [{size}] should be a multiple of 10, at least 10")
        if args.get("volume_type", 0) not in (0, 1, 2, 3, 5, 6):
            raise invalid(f"volume_type [{args['volume_type']}] is not valid")
        if not 1 <= count <= 100:
            raise invalid(f"count [{count}] should be between 1 and 100")
        self._check_quota({"volume": count, "volume_size": size * count})
        made = [
            FakeVolume(
                volume_id=new_id("vol-"),
                volume_name=args.get("volume_name", ""),
                size=size,
                volume_type=args.get("volume_type", 0),
                zone=args["zone"],
            )
            for _ in range(count)
        ]
        for volume in made:
            self._volumes[volume.volume_id] = volume

        def done() -> None:
            for volume in made:
                _move(volume, "available")

        def failed() -> None:
            for volume in made:
                _move(volume, "deleted")

        ids = [v.volume_id for v in made]
        job_id = self._start_job("CreateVolumes", ids, args["zone"], lambda: None, done, failed)
        return {"volumes": ids, "job_id": job_id}

    def _do_describe_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        found = [v for v in self._volumes.values() if v.zone == args["zone"]]
        if "volumes" in args:
            found = [v for v in found if v.volume_id in args["volumes"]]
        if "instance_id" in args:
            found = [v for v in found if v.instance_id == args["instance_id"]]
        if "status" in args:
            found = [v for v in found if v.status in args["status"]]
        if "search_word" in args:
            word = args["search_word"]
            found = [v for v in found if word in v.volume_id or word in v.volume_name]
        page = _page(found, args)
        return {"volume_set": [self._volume_json(v) for v in page], "total_count": len(found)}

    def _volume_job(
        self,
        action: str,
        volumes: list[FakeVolume],
        zone: str,
        *,
        transition: str,
        done: Callable[[FakeVolume], None],
    ) -> dict[str, Any]:
        for volume in volumes:
            if volume.transition_status:
                raise denied(f"volume [{volume.volume_id}] is [{volume.transition_status}]")
        before = {v.volume_id: v.status for v in volumes}
        for volume in volumes:
            volume.transition_status = transition

        def finish() -> None:
            for volume in volumes:
                done(volume)

        def failed() -> None:
            for volume in volumes:
                _move(volume, before[volume.volume_id])

        ids = [v.volume_id for v in volumes]
        return {"job_id": self._start_job(action, ids, zone, lambda: None, finish, failed)}

    def _do_attach_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        instance = self._instance(args["instance"], args["zone"])
        if instance.status not in ("running", "stopped") or instance.transition_status:
            raise denied(f"instance [{instance.instance_id}] is [{instance.status}]")
        volumes = [self._volume(ident, args["zone"]) for ident in args["volumes"]]
        for volume in volumes:
            if volume.status != "available":
                raise denied(f"volume [{volume.volume_id}] is [{volume.status}], not available")

        def attach(volume: FakeVolume) -> None:
            volume.instance_id = instance.instance_id
            instance.volume_ids.append(volume.volume_id)
            _move(volume, "in-use")

        return self._volume_job(
            "AttachVolumes", volumes, args["zone"], transition="attaching", done=attach
        )

    def _do_detach_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        instance = self._instance(args["instance"], args["zone"])
        volumes = [self._volume(ident, args["zone"]) for ident in args["volumes"]]
        for volume in volumes:
            if volume.instance_id != instance.instance_id:
                raise denied(
                    f"volume [{volume.volume_id}] is not attached to [{instance.instance_id}]"
                )

        def detach(volume: FakeVolume) -> None:
            volume.instance_id = ""
            instance.volume_ids.remove(volume.volume_id)
            _move(volume, "available")

        return self._volume_job(
            "DetachVolumes", volumes, args["zone"], transition="detaching", done=detach
        )

    def _do_resize_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        volumes = [self._volume(ident, args["zone"]) for ident in args["volumes"]]
        size = args["size"]
        for volume in volumes:
            if volume.status != "available":
                raise denied(f"volume [{volume.volume_id}] should be detached to resize")
            if size <= volume.size or size % 10:
                raise invalid(f"size [{size}] should be a larger multiple of 10")
        self._check_quota({"volume_size": sum(size - v.size for v in volumes)})

        def grow(volume: FakeVolume) -> None:
            volume.size = size
            _move(volume, "available")

        return self._volume_job(
            "ResizeVolumes", volumes, args["zone"], transition="resizing", done=grow
        )

    def _do_delete_volumes(self, args: dict[str, Any]) -> dict[str, Any]:
        volumes = [self._volume(ident, args["zone"]) for ident in args["volumes"]]
        for volume in volumes:
            if volume.status != "available":
                raise denied(f"volume [{volume.volume_id}] is [{volume.status}], detach it first")
        return self._volume_job(
            "DeleteVolumes",
            volumes,
            args["zone"],
            transition="deleting",
            done=lambda volume: _move(volume, "deleted"),
        )

    # -------------------------------------------------------------------------------- jobs

    def _do_describe_jobs(self, args: dict[str, Any]) -> dict[str, Any]:
        found = [j for j in self._jobs.values() if j.zone == args["zone"]]
        if "jobs" in args:
            found = [j for j in found if j.job_id in args["jobs"]]
        if "status" in args:
            found = [j for j in found if j.status in args["status"]]
        if "job_action" in args:
            found = [j for j in found if j.job_action == args["job_action"]]
        page = _page(found, args)
        return {"job_set": [j.as_json() for j in page], "total_count": len(found)}


def _move(resource: FakeInstance | FakeVolume, status: str) -> None:
    resource.status = status
    resource.transition_status = ""
    resource.status_time = now_text()


def _page(items: list[Any], args: dict[str, Any]) -> list[Any]:
    offset, limit = args.get("offset", 0), args.get("limit", 20)
    if offset < 0 or not 1 <= limit <= 100:
        raise invalid("offset should be >= 0 and limit between 1 and 100")
    return items[offset : offset + limit]


def _snake(action: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()


async def _respond(
    send: Callable[[dict[str, Any]], Any], status: int, body: bytes, content_type: str
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def running_fake(**options: Any) -> Iterator[QingCloudFake]:
    """A started fake, stopped on exit."""
    fake = QingCloudFake(**options)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
