"""`serve --demo`: a small chart repo built at start, served by the gateway, added as a repo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlmodel import col

from openpitrix.crypto import load_secret_box
from openpitrix.db.engine import Database
from openpitrix.iam.access import Caller, Op
from openpitrix.iam.bootstrap import DEFAULT_ADMIN_EMAIL
from openpitrix.iam.models import User
from openpitrix.iam.schemas import Role, UserStatus
from openpitrix.iam.service import find_live_user
from openpitrix.providers.registry import installed_names
from openpitrix.repos import service as repos
from openpitrix.repos.models import Repo
from openpitrix.repos.schemas import RepoCreate, RepoStatus, RepoUpdate
from openpitrix.settings import Settings

log = logging.getLogger(__name__)

REPO_NAME = "demo"
MOUNT_PATH = "/demo-charts"
# Pinned, so the packages (and their digests) are byte-identical on every start: a restart
# rewrites nothing and a re-index of an unchanged repo is one 304.
_MTIME = 1_767_225_600  # 2026-01-01T00:00:00Z
_CREATED = "2026-01-01T00:00:00Z"

_HELLO_VALUES = """\
# Values of the demo chart; override any of them when deploying.
replicaCount: 1
message: Hello from OpenPitrix
image:
  repository: nginx
  tag: "1.27"
"""

_HELLO_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-hello
data:
  message: {{ .Values.message | quote }}
"""

_HELLO_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-hello
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels: {app: {{ .Release.Name }}-hello}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}-hello}
    spec:
      containers:
        - name: web
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
          env:
            - name: MESSAGE
              valueFrom: {configMapKeyRef: {name: {{ .Release.Name }}-hello, key: message}}
"""

_NOTES_VALUES = """\
notes:
  welcome: Welcome to OpenPitrix
"""

_NOTES_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-notes
data:
  {{- range $key, $value := .Values.notes }}
  {{ $key }}: {{ $value | quote }}
  {{- end }}
"""


@dataclass(frozen=True)
class DemoChart:
    name: str
    version: str
    app_version: str
    description: str
    files: dict[str, str]

    @property
    def package_name(self) -> str:
        return f"{self.name}-{self.version}.tgz"

    def chart_yaml(self) -> str:
        return (
            f"apiVersion: v2\nname: {self.name}\nversion: {self.version}\n"
            f'appVersion: "{self.app_version}"\ndescription: {self.description}\n'
            "type: application\n"
        )

    def package(self) -> bytes:
        """The gzip tarball `helm package` would write, rooted at `<name>/`."""
        raw = io.BytesIO()
        files = {"Chart.yaml": self.chart_yaml(), **self.files}
        with (
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed,
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for relative, text in sorted(files.items()):
                data = text.encode()
                info = tarfile.TarInfo(f"{self.name}/{relative}")
                info.size = len(data)
                info.mtime = _MTIME
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        return raw.getvalue()


def _hello(version: str, app_version: str) -> DemoChart:
    return DemoChart(
        name="hello",
        version=version,
        app_version=app_version,
        description="A web server greeting with a configurable message",
        files={
            "values.yaml": _HELLO_VALUES,
            "templates/configmap.yaml": _HELLO_CONFIGMAP,
            "templates/deployment.yaml": _HELLO_DEPLOYMENT,
        },
    )


CHARTS: tuple[DemoChart, ...] = (
    _hello("0.1.0", "1.26"),
    _hello("0.2.0", "1.27"),
    DemoChart(
        name="notes",
        version="1.0.0",
        app_version="1.0.0",
        description="Key-value notes kept in a ConfigMap",
        files={"values.yaml": _NOTES_VALUES, "templates/configmap.yaml": _NOTES_CONFIGMAP},
    ),
)


def _write_if_changed(path: Path, data: bytes) -> None:
    # Rewriting equal bytes would change the mtime, hence the ETag, hence force a full
    # re-fetch of an index that did not change.
    if path.exists() and path.read_bytes() == data:
        return
    path.write_bytes(data)


def build_chart_repo(directory: Path) -> Path:
    """Write the demo charts and their index.yaml (JSON, which YAML readers accept) to
    `directory`; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    entries: dict[str, list[dict[str, object]]] = {}
    for chart in CHARTS:
        package = chart.package()
        _write_if_changed(directory / chart.package_name, package)
        entries.setdefault(chart.name, []).append(
            {
                "apiVersion": "v2",
                "name": chart.name,
                "version": chart.version,
                "appVersion": chart.app_version,
                "description": chart.description,
                "type": "application",
                "created": _CREATED,
                "digest": hashlib.sha256(package).hexdigest(),
                # Relative: resolved against the repo URL, whatever host and port serve it.
                "urls": [chart.package_name],
            }
        )
    index = {"apiVersion": "v1", "entries": entries, "generated": _CREATED}
    _write_if_changed(directory / "index.yaml", json.dumps(index, indent=2).encode() + b"\n")
    return directory


def chart_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "demo-charts"


def repo_url(settings: Settings) -> str:
    """Where the gateway serves the demo charts, as the indexer in this process reaches it."""
    host = settings.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}{MOUNT_PATH}"


async def _admin(db: Database, settings: Settings) -> User | None:
    """The bootstrap admin (by its email), else the oldest live admin."""
    async with db.read_session() as session:
        user = await find_live_user(session, settings.bootstrap_admin_email or DEFAULT_ADMIN_EMAIL)
        if user is not None and user.role == Role.ADMIN:
            return user
        stmt = (
            select(User)
            .where(col(User.role) == Role.ADMIN, col(User.status) == UserStatus.ACTIVE)
            .order_by(col(User.create_time))
            .limit(1)
        )
        return (await session.execute(stmt)).scalar_one_or_none()


async def ensure_demo_repo(db: Database, settings: Settings) -> str | None:
    """Add the repo `demo` (owned by the first admin) pointing at the demo charts; idempotent:
    a restart keeps the repo, and only re-points it (which re-indexes it) when the gateway's
    address changed. Returns the repo id, or None when there is no admin to own it."""
    admin = await _admin(db, settings)
    if admin is None:
        return None
    access = Caller(user_id=admin.user_id, role=Role(admin.role), group_path=admin.group_path)
    writer = access.access(Op.REPO_WRITE)
    url = repo_url(settings)
    secrets = load_secret_box(settings)
    async with db.transaction() as session:
        stmt = select(Repo).where(
            col(Repo.owner) == admin.user_id,
            col(Repo.name) == REPO_NAME,
            col(Repo.status) != RepoStatus.DELETED,
        )
        repo = (await session.execute(stmt)).scalar_one_or_none()
        if repo is None:
            data = RepoCreate.model_validate(
                {
                    "name": REPO_NAME,
                    "type": "http",
                    "url": url,
                    "providers": ["kubernetes"],
                    "labels": [{"key": "source", "value": "demo"}],
                    "description": "Demo charts generated by `openpitrix serve --demo`",
                }
            )
            repo, job = await repos.create_repo(
                session,
                data,
                access=writer,
                settings=settings,
                secrets=secrets,
                installed=installed_names(),
            )
            log.info("demo repo added repo=%s url=%s index_job=%s", repo.repo_id, url, job.job_id)
        elif repo.url != url:
            await repos.update_repo(
                session,
                repo.repo_id,
                RepoUpdate(url=url),
                access=writer,
                settings=settings,
                secrets=secrets,
                installed=installed_names(),
            )
            log.info("demo repo moved repo=%s url=%s", repo.repo_id, url)
        return repo.repo_id
