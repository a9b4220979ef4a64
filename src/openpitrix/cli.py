"""The `openpitrix` command: serve, api, worker, migrate, openapi, users, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import SecretStr, TypeAdapter, ValidationError
from starlette.staticfiles import StaticFiles

from openpitrix import demo as demo_repo
from openpitrix import heap, secrets_rotation
from openpitrix.bus.topology import MANAGERS
from openpitrix.composition import build_registry
from openpitrix.crypto import load_secret_box
from openpitrix.db.engine import Database
from openpitrix.db.migrate import upgrade
from openpitrix.errors import AppError
from openpitrix.gateway import create_app
from openpitrix.iam import passwords
from openpitrix.iam import service as iam_service
from openpitrix.iam.bootstrap import DEFAULT_ADMIN_EMAIL, ensure_bootstrap_admin
from openpitrix.iam.schemas import Email, GroupPath, Role, UserName
from openpitrix.logs import setup_logging
from openpitrix.platform import Platform, executor_name
from openpitrix.settings import Settings
from openpitrix.workers.runner import WorkerGroup
from openpitrix.workers.service import Manager, WorkerContext

app = typer.Typer(
    help="OpenPitrix: multi-cloud application management server.", no_args_is_help=True
)
log = logging.getLogger("openpitrix")

HostOpt = Annotated[str | None, typer.Option(help="Listen address (default from settings).")]
PortOpt = Annotated[int | None, typer.Option(help="Listen port (default from settings).")]


def _settings(**overrides: object) -> Settings:
    settings = Settings()
    changes = {k: v for k, v in overrides.items() if v is not None}
    settings = settings.model_copy(update=changes) if changes else settings
    setup_logging(settings.log_level, json_lines=settings.log_json)
    return settings


def local_mode(settings: Settings) -> Settings:
    """`serve` defaults: repos and clusters on this machine or the LAN are normal there, so
    outbound connections may reach private addresses unless
    OPENPITRIX_NETWORK__ALLOW_PRIVATE_ADDRESSES says otherwise."""
    if "allow_private_addresses" in settings.network.model_fields_set:
        return settings
    network = settings.network.model_copy(update={"allow_private_addresses": True})
    return settings.model_copy(update={"network": network})


def _serve_http(settings: Settings, fastapi_app: object, *, listen_first: bool = False) -> None:
    config = uvicorn.Config(
        fastapi_app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.worker.drain_seconds) + 5,
    )
    server = uvicorn.Server(config)
    if not listen_first:
        server.run()
        return
    # Listening before the lifespan starts the workers: connections made meanwhile (the demo
    # repo's first index job fetches from this very gateway) wait in the backlog for the app
    # instead of being refused.
    sock = config.bind_socket()
    sock.listen(config.backlog)
    server.run(sockets=[sock])


ADMIN_PASSWORD_FILE = "admin-password"  # noqa: S105 - a file name


def _write_private(path: Path, text: str) -> None:
    """Create `path` readable by its owner only (0600 from the start, never wider)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")


async def _prepare_local(settings: Settings, *, demo: bool) -> None:
    """`serve`'s first steps: the first admin (its generated password written to a file the
    README reads) and, with `--demo`, the demo chart repo."""
    db = Database(settings.effective_database_url)
    try:
        email = settings.bootstrap_admin_email or DEFAULT_ADMIN_EMAIL
        password_file = settings.data_dir.resolve() / ADMIN_PASSWORD_FILE
        async with db.read_session() as session:
            had_users = await iam_service.any_user_exists(session)
        generated = await ensure_bootstrap_admin(db, settings)
        if settings.bootstrap_admin_password is not None:
            if had_users:
                log.warning("users exist already: the given admin password was not applied")
            else:
                log.warning("created the first admin email=%s with the given password", email)
        elif generated is not None:
            _write_private(password_file, generated)
            log.warning(
                "created the first admin email=%s; its password is in %s (mode 0600): "
                "log in with it and change it",
                email,
                password_file,
            )
        elif password_file.exists():
            async with db.read_session() as session:
                user = await iam_service.find_live_user(session, email)
            stored = user.password_hash if user is not None else None
            given = password_file.read_text(encoding="utf-8").strip()
            if await passwords.verify_password_async(stored, given):
                log.warning("log in as email=%s with the password in %s", email, password_file)
        if demo:
            await asyncio.to_thread(demo_repo.build_chart_repo, demo_repo.chart_dir(settings))
            repo_id = await demo_repo.ensure_demo_repo(db, settings)
            if repo_id is None:
                log.warning("demo: no admin to own the demo repo; skipped")
            else:
                log.warning(
                    "demo charts served at %s/index.yaml as repo name=%s id=%s",
                    demo_repo.repo_url(settings),
                    demo_repo.REPO_NAME,
                    repo_id,
                )
    finally:
        await db.dispose()


@app.command()
def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="Embedded database and NATS store.")] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Publish a small chart repo generated under the data dir at /demo-charts and "
            "add it as the admin's repo `demo` (indexed at start).",
        ),
    ] = False,
    admin_password: Annotated[
        str | None,
        typer.Option(
            help="Password of the first admin when it is created (local use; default: "
            "OPENPITRIX_BOOTSTRAP_ADMIN_PASSWORD, else generated into <data-dir>/admin-password).",
        ),
    ] = None,
) -> None:
    """Everything in one process on embedded defaults: migrations, gateway, every manager."""
    settings = local_mode(_settings(host=host, port=port, data_dir=data_dir))
    if admin_password is not None:
        try:
            passwords.check_policy(admin_password)
        except passwords.PasswordPolicyError as exc:
            raise typer.BadParameter(str(exc), param_hint="--admin-password") from None
        settings = settings.model_copy(
            update={"bootstrap_admin_password": SecretStr(admin_password)}
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.effective_database_url)
    asyncio.run(_prepare_local(settings, demo=demo))
    fastapi_app = create_app(settings, run_workers=True)
    if demo:
        # Outside the routers on purpose: a chart repo is read anonymously, like any other.
        fastapi_app.mount(
            demo_repo.MOUNT_PATH,
            StaticFiles(directory=demo_repo.chart_dir(settings)),
            name="demo-charts",
        )
    log.info("serving on http://%s:%d (docs at /docs)", settings.host, settings.port)
    _serve_http(settings, fastapi_app, listen_first=True)


@app.command()
def api(host: HostOpt = None, port: PortOpt = None) -> None:
    """The HTTP gateway alone (run `openpitrix migrate` first)."""
    settings = _settings(host=host, port=port)
    _serve_http(settings, create_app(settings))


@app.command()
def worker(
    manager: Annotated[
        list[str] | None,
        typer.Option(help=f"Manager to run (repeatable; default all): {', '.join(MANAGERS)}."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Commands each manager handles at once (default: worker.concurrency; "
            "worker.task_concurrency for the task-manager).",
        ),
    ] = None,
) -> None:
    """Run manager workers until SIGTERM/SIGINT, then drain in-flight commands."""
    # Here and not at the top: the gateway's commands never load the workers' engine.
    from openpitrix.managers import build_managers

    settings = _settings()
    try:
        managers = build_managers(manager, build_registry())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    asyncio.run(_run_worker(settings, managers, concurrency))


async def _run_worker(settings: Settings, managers: list[Manager], concurrency: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    platform = Platform(settings, role="worker")
    await platform.start(relay=settings.relay_enabled)
    try:
        ctx = WorkerContext(
            settings=settings,
            db=platform.db,
            js=platform.js,
            http=platform.http,
            executor=executor_name(),
        )
        group = WorkerGroup(ctx, managers, concurrency=concurrency)
        group.start()
        heap.settle(settings.gc)
        await stop.wait()
        log.info("stopping: draining in-flight commands")
        await group.stop()
    finally:
        await platform.stop()


@app.command()
def migrate() -> None:
    """Upgrade the database to the newest schema."""
    settings = _settings()
    upgrade(settings.effective_database_url)
    typer.echo("database is up to date")


@app.command()
def openapi() -> None:
    """Print the OpenAPI document (the committed copy is openapi/openapi.json)."""
    typer.echo(json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True))


users_app = typer.Typer(help="Manage users from the shell.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def create_user(
    email: Annotated[str, typer.Option(help="Login email (stored lower-cased).")],
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[Role, typer.Option(help="Role of the new user.")] = Role.USER,
    group: Annotated[
        str, typer.Option(help="Group path, e.g. acme/team-a (group-scoped roles share it).")
    ] = "",
    password: Annotated[
        str | None,
        typer.Option(help="Password (visible in shell history: prefer the prompt or stdin)."),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user in the configured database (run `openpitrix migrate` first); prints its
    id."""
    settings = _settings()
    try:
        email = TypeAdapter(Email).validate_python(email)
        name = TypeAdapter(UserName).validate_python(name)
        group = TypeAdapter(GroupPath).validate_python(group)
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"]) from None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    assert password is not None
    try:
        passwords.check_policy(password)
    except passwords.PasswordPolicyError as exc:
        raise typer.BadParameter(str(exc), param_hint="password") from None
    try:
        user_id = asyncio.run(_create_user(settings, email, name, role, password, group))
    except AppError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(user_id)


async def _create_user(
    settings: Settings, email: str, name: str, role: Role, password: str, group: str
) -> str:
    db = Database(settings.effective_database_url)
    try:
        async with db.transaction() as session:
            user = await iam_service.create_user(
                session, email=email, name=name, role=role, password=password, group_path=group
            )
        return user.user_id
    finally:
        await db.dispose()


secrets_app = typer.Typer(help="Manage stored secrets.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("rotate")
def rotate_secrets(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be resealed; write nothing.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Rows read and rewritten per transaction.")
    ] = secrets_rotation.BATCH_SIZE,
) -> None:
    """Re-encrypt every stored secret under the newest key of OPENPITRIX_AUTH__SECRET_KEYS.

    Exits 1 if some secret no configured key opens (listed on stderr): keep the old keys.
    """
    settings = _settings()
    report = asyncio.run(_rotate_secrets(settings, dry_run=dry_run, batch_size=batch_size))
    for ref in report.unreadable:
        typer.echo(f"unreadable: {ref}", err=True)
    typer.echo(report.summary() + (" (dry run: nothing written)" if dry_run else ""))
    if not report.ok:
        raise typer.Exit(1)


async def _rotate_secrets(
    settings: Settings, *, dry_run: bool, batch_size: int
) -> secrets_rotation.RotationReport:
    db = Database(settings.effective_database_url)
    try:
        return await secrets_rotation.rotate_secrets(
            db, load_secret_box(settings), batch_size=batch_size, dry_run=dry_run
        )
    finally:
        await db.dispose()


def main() -> None:
    app()
