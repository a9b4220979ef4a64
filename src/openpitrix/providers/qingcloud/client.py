"""An async client for the QingCloud IaaS API over httpx, through the address guard.

Every call is one signed GET (a POST with a form body when the query would be long, as user
data makes it) to the endpoint, answered by JSON with `ret_code`. Actions that change things
return a `job_id`; `wait_job` polls DescribeJobs until the job ends. The client never retries:
it raises ProviderError with `retryable` set where a later attempt may succeed, and the job
engine decides.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import BaseModel, ValidationError

from openpitrix.netguard import ADDRESS_NOT_ALLOWED, AddressPolicy, guarded_transport, refusal_in
from openpitrix.providers.base import EndpointRefused, ProviderError
from openpitrix.providers.qingcloud import signer
from openpitrix.providers.qingcloud.errors import JobFailed, JobTimeout, error_for
from openpitrix.providers.qingcloud.results import (
    Accepted,
    Instance,
    Job,
    UserData,
    Volume,
    Zone,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT: Final = "https://api.qingcloud.com/iaas/"
# Longer queries go as a POST form body: proxies and servers cap URL length (user data in
# base64 reaches it quickly); the signature then covers the POST method.
MAX_GET_QUERY: Final = 4096
PAGE_LIMIT: Final = 100  # QingCloud's largest page for Describe* actions

ParamValue = str | int | bool | Sequence[str | int] | None
JobProgress = Callable[[Job], Awaitable[None]]
_Model = TypeVar("_Model", bound=BaseModel)


def flatten(params: Mapping[str, ParamValue]) -> dict[str, str]:
    """QingCloud's parameter encoding: lists as `name.1`, `name.2`..., booleans as 1/0, None
    left out."""
    flat: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            flat[name] = "1" if value else "0"
        elif isinstance(value, str | int):
            flat[name] = str(value)
        else:
            for index, item in enumerate(value, start=1):
                flat[f"{name}.{index}"] = str(item)
    return flat


def check_endpoint(endpoint: str) -> str:
    """The endpoint, refused if it is not an http(s) URL; a trailing `/` is added to the path
    (the signature covers the path, and QingCloud's is `/iaas/`)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointRefused("endpoint_invalid", f"not an http(s) URL: {endpoint!r}")
    if parts.query or parts.fragment:
        raise EndpointRefused("endpoint_invalid", "the endpoint takes no query or fragment")
    path = parts.path if parts.path.endswith("/") else f"{parts.path}/"
    return parts._replace(path=path).geturl()


class QingCloudClient:
    """One access key against one QingCloud endpoint; `zone` is the default zone of calls
    ("" for a client that only asks zone-less actions such as DescribeZones).

    Use as an async context manager (or call `aclose`). Connections go through
    `netguard.guarded_transport(policy)` only: the endpoint is user input.
    """

    def __init__(
        self,
        *,
        access_key_id: str,
        secret_access_key: str,
        zone: str,
        policy: AddressPolicy,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = 30.0,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.endpoint = check_endpoint(endpoint)
        self.zone = zone
        self.access_key_id = access_key_id
        self._secret = secret_access_key
        self._path = urlsplit(self.endpoint).path
        self._clock = clock
        self._http = httpx.AsyncClient(
            transport=guarded_transport(policy, verify=verify),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        # The secret never appears, whatever logs the client.
        return f"QingCloudClient(endpoint={self.endpoint!r}, key={self.access_key_id!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---------------------------------------------------------------------------- the wire

    async def call(
        self, action: str, params: Mapping[str, ParamValue] | None = None, *, zone: str | None = ""
    ) -> dict[str, Any]:
        """Call `action` and return its answer (ret_code 0); raise the ProviderError for a
        refusal. `zone` defaults to the client's; None (or no zone at all) sends none."""
        flat = flatten(params or {})
        flat["action"] = action
        chosen = self.zone if zone == "" else zone
        if chosen:
            flat["zone"] = chosen
        method = "GET"
        query = self._signed_query("GET", flat)
        if len(query) > MAX_GET_QUERY:
            method = "POST"
            query = self._signed_query("POST", flat)
        started = time.monotonic()
        try:
            if method == "GET":
                response = await self._http.get(f"{self.endpoint}?{query}")
            else:
                response = await self._http.post(
                    self.endpoint,
                    content=query.encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
        except httpx.HTTPError as exc:
            raise self._transport_error(action, exc) from None
        body = self._answer(action, response)
        ret_code = body.get("ret_code")
        log.info(
            "qingcloud call action=%s zone=%s ret_code=%s seconds=%.3f",
            action,
            chosen,
            ret_code,
            time.monotonic() - started,
        )
        if ret_code != 0:
            code = ret_code if isinstance(ret_code, int) else -1
            raise error_for(action, code, str(body.get("message", "")))
        return body

    def _signed_query(self, method: str, params: Mapping[str, str]) -> str:
        signed = signer.sign_params(
            params,
            access_key_id=self.access_key_id,
            secret_access_key=self._secret,
            method=method,
            path=self._path,
            now=self._clock() if self._clock is not None else None,
        )
        return signer.encoded_query(signed)

    def _transport_error(self, action: str, exc: httpx.HTTPError) -> ProviderError:
        refusal = refusal_in(exc)
        if refusal is not None:
            return EndpointRefused(ADDRESS_NOT_ALLOWED, f"QingCloud endpoint refused: {refusal}")
        detail = str(exc) or type(exc).__name__
        return ProviderError("cloud_unreachable", f"QingCloud {action}: {detail}", retryable=True)

    def _answer(self, action: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status == 429 or status >= 500:
            raise ProviderError(
                "cloud_unavailable",
                f"QingCloud {action}: HTTP {status} from {self.endpoint}",
                retryable=True,
            )
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if status != 200 or not isinstance(body, dict) or "ret_code" not in body:
            # Not QingCloud's API: a wrong endpoint is not fixed by trying again.
            raise EndpointRefused(
                "endpoint_not_qingcloud",
                f"QingCloud {action}: {self.endpoint} answered HTTP {status} "
                "without a QingCloud API response",
            )
        return body

    # ------------------------------------------------------------------------- the actions

    async def describe_zones(self) -> list[Zone]:
        body = await self.call("DescribeZones", zone=None)
        return _parse_list(Zone, body.get("zone_set"))

    async def get_quota_left(self, resource_types: Sequence[str] = ()) -> dict[str, int]:
        """What is left of the account's quotas in the zone, by resource type (`instance`,
        `cpu`, `memory`, `volume`, `volume_size`, ...); all types if none are named."""
        body = await self.call("GetQuotaLeft", {"resource_types": list(resource_types) or None})
        left: dict[str, int] = {}
        for item in body.get("quota_left_set") or []:
            if isinstance(item, dict) and isinstance(item.get("resource_type"), str):
                left[item["resource_type"]] = int(item.get("left") or 0)
        return left

    async def run_instances(
        self,
        *,
        image_id: str,
        instance_type: str | None = None,
        instance_class: int | None = None,
        cpu: int | None = None,
        memory: int | None = None,
        count: int = 1,
        instance_name: str | None = None,
        hostname: str | None = None,
        vxnets: Sequence[str] = (),
        security_group: str | None = None,
        login_mode: str,
        login_keypair: str | None = None,
        login_passwd: str | None = None,
        volumes: Sequence[str] = (),
        os_disk_size: int | None = None,
        user_data: UserData | None = None,
    ) -> Accepted:
        """Start `count` instances of an image, sized by `instance_type` or `cpu` + `memory`
        (MiB), of performance class `instance_class` (0 or 1), logging in by `login_mode`
        "keypair" (`login_keypair`) or "passwd" (`login_passwd`). Returns the job and the new
        instance ids."""
        params: dict[str, ParamValue] = {
            "image_id": image_id,
            "instance_type": instance_type,
            "instance_class": instance_class,
            "cpu": cpu,
            "memory": memory,
            "count": count,
            "instance_name": instance_name,
            "hostname": hostname,
            "vxnets": list(vxnets) or None,
            "security_group": security_group,
            "login_mode": login_mode,
            "login_keypair": login_keypair,
            "login_passwd": login_passwd,
            "volumes": list(volumes) or None,
            "os_disk_size": os_disk_size,
        }
        if user_data is not None:
            params.update(user_data.params())
        body = await self.call("RunInstances", params)
        return _accepted(body, "instances")

    async def describe_instances(
        self,
        instance_ids: Sequence[str] = (),
        *,
        status: Sequence[str] = (),
        search_word: str | None = None,
        tags: Sequence[str] = (),
    ) -> list[Instance]:
        """The instances named (or all, filtered), every page of them."""
        return await self._describe_all(
            "DescribeInstances",
            "instance_set",
            Instance,
            {
                "instances": list(instance_ids) or None,
                "status": list(status) or None,
                "search_word": search_word,
                "tags": list(tags) or None,
                "verbose": 1,
            },
        )

    async def stop_instances(self, instance_ids: Sequence[str], *, force: bool = False) -> str:
        return await self._job("StopInstances", {"instances": _ids(instance_ids), "force": force})

    async def start_instances(self, instance_ids: Sequence[str]) -> str:
        return await self._job("StartInstances", {"instances": _ids(instance_ids)})

    async def restart_instances(self, instance_ids: Sequence[str]) -> str:
        return await self._job("RestartInstances", {"instances": _ids(instance_ids)})

    async def resize_instances(
        self,
        instance_ids: Sequence[str],
        *,
        instance_type: str | None = None,
        cpu: int | None = None,
        memory: int | None = None,
    ) -> str:
        """Resize stopped instances to `instance_type` or `cpu` + `memory` (MiB)."""
        if instance_type is None and cpu is None and memory is None:
            raise ValueError("give instance_type, or cpu and/or memory")
        return await self._job(
            "ResizeInstances",
            {
                "instances": _ids(instance_ids),
                "instance_type": instance_type,
                "cpu": cpu,
                "memory": memory,
            },
        )

    async def terminate_instances(self, instance_ids: Sequence[str]) -> str:
        return await self._job("TerminateInstances", {"instances": _ids(instance_ids)})

    async def create_volumes(
        self, *, size: int, volume_name: str | None = None, volume_type: int = 0, count: int = 1
    ) -> Accepted:
        """Create `count` volumes of `size` GiB; returns the job and the new volume ids."""
        body = await self.call(
            "CreateVolumes",
            {"size": size, "volume_name": volume_name, "volume_type": volume_type, "count": count},
        )
        return _accepted(body, "volumes")

    async def describe_volumes(
        self,
        volume_ids: Sequence[str] = (),
        *,
        instance_id: str | None = None,
        status: Sequence[str] = (),
        search_word: str | None = None,
    ) -> list[Volume]:
        return await self._describe_all(
            "DescribeVolumes",
            "volume_set",
            Volume,
            {
                "volumes": list(volume_ids) or None,
                "instance_id": instance_id,
                "status": list(status) or None,
                "search_word": search_word,
                "verbose": 1,
            },
        )

    async def attach_volumes(self, volume_ids: Sequence[str], instance_id: str) -> str:
        return await self._job(
            "AttachVolumes", {"volumes": _ids(volume_ids), "instance": instance_id}
        )

    async def detach_volumes(self, volume_ids: Sequence[str], instance_id: str) -> str:
        return await self._job(
            "DetachVolumes", {"volumes": _ids(volume_ids), "instance": instance_id}
        )

    async def resize_volumes(self, volume_ids: Sequence[str], size: int) -> str:
        """Grow detached volumes to `size` GiB (QingCloud never shrinks a volume)."""
        return await self._job("ResizeVolumes", {"volumes": _ids(volume_ids), "size": size})

    async def delete_volumes(self, volume_ids: Sequence[str]) -> str:
        return await self._job("DeleteVolumes", {"volumes": _ids(volume_ids)})

    async def describe_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        body = await self.call("DescribeJobs", {"jobs": _ids(job_ids)})
        return _parse_list(Job, body.get("job_set"))

    async def find_jobs(
        self,
        job_ids: Sequence[str] = (),
        *,
        action: str | None = None,
        status: Sequence[str] = (),
    ) -> list[Job]:
        """The zone's jobs with these ids (all, if none named), of `action`, in one of these
        statuses, every page of them."""
        params: dict[str, ParamValue] = {}
        if job_ids:
            params["jobs"] = list(job_ids)
        if action is not None:
            params["job_action"] = action
        if status:
            params["status"] = list(status)
        return await self._describe_all("DescribeJobs", "job_set", Job, params)

    async def wait_job(
        self,
        job_id: str,
        *,
        timeout: float,
        interval: float = 2.0,
        max_interval: float = 10.0,
        on_progress: JobProgress | None = None,
    ) -> Job:
        """Poll the job until it ends; return it if successful, raise JobFailed if it failed
        and JobTimeout (retryable) if `timeout` seconds pass first. `on_progress` is called
        with the job whenever its status changes. Polls back off from `interval` to
        `max_interval`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = interval
        seen = ""
        while True:
            jobs = await self.describe_jobs([job_id])
            job = next((j for j in jobs if j.job_id == job_id), None)
            if job is None:
                raise ProviderError("cloud_resource_not_found", f"QingCloud job {job_id} not found")
            if job.status != seen:
                seen = job.status
                if on_progress is not None:
                    await on_progress(job)
            if job.done:
                if not job.succeeded:
                    raise JobFailed(job.job_id, job.job_action, job.status)
                return job
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise JobTimeout(job.job_id, job.job_action, job.status, timeout)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 1.5, max_interval)

    # ----------------------------------------------------------------------------- helpers

    async def _job(self, action: str, params: Mapping[str, ParamValue]) -> str:
        body = await self.call(action, params)
        return _job_id(action, body)

    async def _describe_all(
        self,
        action: str,
        set_name: str,
        model: type[_Model],
        params: Mapping[str, ParamValue],
    ) -> list[_Model]:
        found: list[_Model] = []
        offset = 0
        while True:
            body = await self.call(action, {**params, "offset": offset, "limit": PAGE_LIMIT})
            page = _parse_list(model, body.get(set_name))
            found.extend(page)
            offset += len(page)
            total = body.get("total_count")
            if not page or not isinstance(total, int) or offset >= total:
                return found


def _ids(ids: Iterable[str]) -> list[str]:
    listed = list(ids)
    if not listed:
        raise ValueError("name at least one resource id")
    return listed


def _job_id(action: str, body: Mapping[str, Any]) -> str:
    job_id = body.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ProviderError("cloud_bad_response", f"QingCloud {action} returned no job_id")
    return job_id


def _accepted(body: Mapping[str, Any], ids_name: str) -> Accepted:
    action = str(body.get("action", "")).removesuffix("Response")
    ids = body.get(ids_name) or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ProviderError("cloud_bad_response", f"QingCloud {action}: malformed {ids_name}")
    return Accepted(job_id=_job_id(action, body), ids=tuple(ids))


def _parse_list(model: type[_Model], items: Any) -> list[_Model]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise ProviderError("cloud_bad_response", f"expected a list of {model.__name__}")
    try:
        return [model.model_validate(item) for item in items]
    except ValidationError as exc:
        raise ProviderError(
            "cloud_bad_response", f"malformed {model.__name__} in QingCloud's answer: {exc}"
        ) from None
